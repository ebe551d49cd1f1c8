"""One pass over the config: resolve tags, check every image for free, copy what changed.

1. The target is pinged first: if it cannot take images, no upstream pull is spent.
2. Every image is checked with HEADs (free upstream) concurrently.
3. Changed images are copied, most out of date first, queued per upstream registry so
   one registry waiting for its quota never holds up another (scheduler.py).

A failing image is recorded and the others go on; `plan` stops after step 2 and says what
a sync would spend and whether the quota covers it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import structlog

from mirror.aws.ptc import ptc_prefix
from mirror.config import Config, ImageEntry
from mirror.config.model import TagRule
from mirror.config.selection import select_tags
from mirror.coordination import repository_lease
from mirror.engine import progress
from mirror.engine.artifacts import ArtifactCopier
from mirror.engine.blobs import BlobCopier
from mirror.engine.copy import Check, CopyJob, ImageCopier, Staleness
from mirror.engine.events import FLUSH_SECONDS, EventPublisher, TagMoved
from mirror.engine.naming import pull_through_reference, target_reference
from mirror.engine.quota import QuotaWait
from mirror.engine.replicas import complete_replicas
from mirror.engine.report import (
    Action,
    CredentialUsage,
    ErrorInfo,
    ImageResult,
    PassReport,
    RegistryUsage,
)
from mirror.engine.scheduler import NotYet, QuotaScheduler
from mirror.engine.upstream import Upstream
from mirror.engine.wiring import Clients
from mirror.errors import (
    CoordinationError,
    InvalidTargetNameError,
    MirrorError,
    RegistryError,
    SelectionError,
    printable,
)
from mirror.oci.limits import deadline
from mirror.threads import ContextPool

__all__ = [
    "Pass",
    "Preview",
    "Resolved",
    "SyncOptions",
    "in_shard",
    "preview_rules",
    "pull_through_cached",
    "resolve_jobs",
    "run_pass",
]

log = structlog.get_logger(__name__)
# One event per image per pass, under its own name so a console run can leave them to
# the per-image lines on stdout.
image_log = structlog.get_logger("mirror.images")
IMAGE_EVENTS = logging.getLogger("mirror.images")

OnResult = Callable[[ImageResult], None]
DEFAULT_MAX_WAIT_SECONDS = 600.0


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    max_wait: float = DEFAULT_MAX_WAIT_SECONDS  # seconds a pass may wait for quota
    shard: tuple[int, int] = (0, 1)  # (i, n): this run copies the i-th of n shares
    stop: threading.Event | None = None  # set: start no more images (the daemon's SIGTERM)
    # The daemon's memory of when each target was last checked (monotonic seconds): an
    # image is left out of a pass until its `refresh` (default: `default_refresh`) has
    # passed. None: check all.
    checked_at: dict[str, float] | None = None
    default_refresh: float = 0.0


STOPPING_FLUSH_SECONDS = 2.0  # event deliveries left when the daemon is told to stop

# A pass scheduled exactly one refresh after the last check must find the image due.
DUE_TOLERANCE = 0.9


def _due(key: str, refresh: float | None, options: SyncOptions, now: float) -> bool:
    if options.checked_at is None or key not in options.checked_at:
        return True
    interval = refresh if refresh is not None else options.default_refresh
    return now - options.checked_at[key] >= interval * DUE_TOLERANCE


def is_due(job: CopyJob, options: SyncOptions, now: float) -> bool:
    return _due(str(job.target), job.refresh, options, now)


def listing_key(described: str) -> str:
    """checked_at's key for when a rule entry (by its describe()) last listed tags."""
    return f"tags of {described}"


def listing_due(entry: ImageEntry, options: SyncOptions, now: float) -> bool:
    """A rule entry's tag list is fetched only when its refresh is due: the daemon's
    extra passes for one short-refresh image must not list every other repository."""
    if entry.rule is None:
        return True
    key = listing_key(entry.describe())
    due = _due(key, entry.refresh, options, now)
    if due and options.checked_at is not None:
        options.checked_at[key] = now
    return due


@dataclass
class _Pending:
    """An image that needs copying: the job, its growing result, its latest check."""

    job: CopyJob
    result: ImageResult
    check: Check | None
    order: int


@dataclass
class _Listed:
    """An entry's tags ([None] for a single written tag or digest), and the invalid tags
    its upstream listing held, as escaped samples."""

    tags: list[str | None]
    dropped: list[str] = field(default_factory=list)


def _rule_arguments(rule: TagRule, **override: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "semver_range": rule.semver,
        "latest": rule.latest,
        "regex": rule.regex,
        "variant": rule.variants,
        "per": rule.per,
        "floating": rule.floating,
    }
    return arguments | override


def _entry_tags_from(entry: ImageEntry, available: list[str]) -> list[str]:
    """The tags a rule entry picks of `available`; SelectionError when none."""
    assert entry.rule is not None
    chosen = select_tags(available, **_rule_arguments(entry.rule))
    if not chosen:
        raise SelectionError(
            f"no tag of {entry.source.name} matches {entry.describe()} "
            f"({len(available)} tags upstream)",
            hint="loosen the rule, or check the tags upstream",
        )
    return chosen


def _entry_tags(entry: ImageEntry, clients: Clients) -> _Listed:
    """The tags an entry stands for, listed within the metadata deadline."""
    if entry.tags:
        return _Listed(list(entry.tags))
    if entry.rule is None:
        return _Listed([None])
    upstream = clients.upstream(entry.source.registry)
    with deadline(clients.timeouts.metadata, f"listing the tags of {entry.source.name}"):
        listing = upstream.list_tags(entry.source.repository)
    if listing.dropped:
        log.warning(
            "invalid_tags_dropped",
            entry=entry.describe(),
            count=len(listing.dropped),
            examples=listing.dropped[:5],
        )
    chosen = _entry_tags_from(entry, listing.tags)
    return _Listed(list(chosen), listing.dropped)


@dataclass(frozen=True)
class Preview:
    """What a rule entry picks from its upstream's tags now (`validate --resolve`)."""

    entry: ImageEntry
    tags: list[str]
    listed: int = 0  # tags the upstream lists
    unmirrored_floating: list[str] = field(default_factory=list)  # floating tags left out
    error: str = ""


def preview_rules(config: Config, clients: Clients) -> list[Preview]:
    """Each rule entry's picks, listing tags concurrently (a tag list is no pull)."""
    entries = [e for e in config.images if e.rule is not None]

    def preview(entry: ImageEntry) -> Preview:
        assert entry.rule is not None
        try:
            upstream = clients.upstream(entry.source.registry)
            with deadline(clients.timeouts.metadata, f"listing the tags of {entry.source.name}"):
                listing = upstream.list_tags(entry.source.repository)
            tags = _entry_tags_from(entry, listing.tags)
        except (MirrorError, httpx.HTTPError) as exc:
            return Preview(entry, [], error=printable(str(exc)))
        left_out: list[str] = []
        if not entry.rule.floating:
            with_floating = select_tags(listing.tags, **_rule_arguments(entry.rule, floating=True))
            left_out = [t for t in with_floating if t not in tags]
        return Preview(entry, tags, len(listing.tags), left_out)

    workers = max(1, min(config.model.concurrency.images, len(entries)))
    with ContextPool(workers, thread_name_prefix="list") as pool:
        return list(pool.map(preview, entries))


def pull_through_cached(config: Config, registry: str) -> bool:
    """Whether an ECR pull-through cache rule serves `registry` (nothing is copied)."""
    settings = config.model.registries.get(registry)
    return settings is not None and settings.mode == "pull-through-cache"


def in_shard(job: CopyJob, shard: tuple[int, int]) -> bool:
    """Whether `job` is this run's: a stable hash of its target splits the images into n
    shares, so n tasks (or n scheduled runs) never copy the same image."""
    index, count = shard
    digest = hashlib.sha256(str(job.target).encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index


@dataclass
class Resolved:
    """What the config stands for now: copy jobs in config order, a failed result per
    entry that could not be resolved, and the invalid tags dropped from each listing."""

    jobs: list[CopyJob]
    failures: list[ImageResult]
    dropped_tags: dict[str, list[str]] = field(default_factory=dict)  # entry -> samples


def _list_safely(entry: ImageEntry, clients: Clients) -> _Listed | BaseException:
    """An entry's tags, or what went wrong: one entry's failure is never the pass's."""
    try:
        return _entry_tags(entry, clients)
    except Exception as exc:
        if not isinstance(exc, MirrorError | httpx.HTTPError):
            log.error("entry_crashed", entry=entry.describe(), exc_info=exc)
        return exc


def _unresolved(entry: ImageEntry, exc: BaseException) -> ImageResult:
    return ImageResult(source=entry.describe(), target="", error=ErrorInfo.from_exception(exc))


def _entry_jobs(
    config: Config, entry: ImageEntry, tags: list[str | None], target_registry: str
) -> list[CopyJob]:
    """One copy job per tag; ValueError when a target name would break the grammar (a
    repository path over 255 characters once the prefix is added)."""
    prefix = config.model.target.repository_prefix
    cached = pull_through_cached(config, entry.source.registry)
    rule_prefix = ptc_prefix(prefix, entry.source.registry)
    jobs = []
    for tag in tags:
        source = entry.source.with_tag(tag) if tag else entry.source
        target = (
            pull_through_reference(source, target_registry, rule_prefix)
            if cached
            else target_reference(source, target_registry, prefix)
        )
        jobs.append(
            CopyJob(
                source,
                target,
                entry.platforms,
                entry.immutable(source),
                entry.refresh,
                entry.written_as(tag),
                entry.artifacts,
            )
        )
    return jobs


def resolve_jobs(
    config: Config, clients: Clients, wanted: Callable[[ImageEntry], bool] = lambda _: True
) -> Resolved:
    """Concrete copy jobs, in config order, and a failed result per entry that can't resolve.
    Entries `wanted` turns down are left out before their tags are listed upstream.
    Listings run concurrently, so one slow upstream delays the others by nothing."""
    target_registry = clients.target_registry
    entries = [entry for entry in config.images if wanted(entry)]
    workers = max(1, min(config.model.concurrency.images, len(entries)))
    with ContextPool(workers, thread_name_prefix="list") as pool:
        listed = list(pool.map(lambda e: _list_safely(e, clients), entries))
    resolved = Resolved([], [])
    jobs: dict[str, CopyJob] = {}
    for entry, outcome in zip(entries, listed, strict=True):
        if isinstance(outcome, BaseException):
            resolved.failures.append(_unresolved(entry, outcome))
            continue
        if outcome.dropped:
            resolved.dropped_tags[entry.describe()] = outcome.dropped
        try:
            entry_jobs = _entry_jobs(config, entry, outcome.tags, target_registry)
        except ValueError as exc:  # a target name past the grammar's limits
            resolved.failures.append(_unresolved(entry, InvalidTargetNameError(str(exc))))
            continue
        for job in entry_jobs:
            if str(job.target) in jobs:
                log.warning("duplicate_image", source=str(job.source), line=entry.line)
                continue
            jobs[str(job.target)] = job
    resolved.jobs = list(jobs.values())
    return resolved


# What a 405 to a referrer's push means (ECR has answered so: aws/containers-roadmap#2783).
REFERRERS_REFUSED = (
    "the target does not take OCI 1.1 referrers (manifests with a subject): the image is "
    "in place, its signatures and SBOMs are not"
)


# What a deferred image's code means for whoever reads the report.
DEFER_HINTS = {
    "QUOTA_DEFERRED": "a later run (or the daemon) copies it when the quota allows",
    "LEASED": "another mirror process was copying into its repository until --max-wait; "
    "that process copies it (`mirror status` shows who)",
    "COORDINATION": "the coordination table could not say who copies it: nothing was "
    "copied that another process may be copying; a later run does",
    "STOPPING": "the next run does",
}
LEASE_POLL_SECONDS = 2.0  # how often an image whose repository is leased is looked at again

ABANDONED_HINT = (
    "mirror was stopped (SIGTERM) and its grace period ran out while this image was "
    "copying; nothing of it was tagged, and the next run copies it"
)


class Pass:
    """The state of one pass: `run()` it (or `run_pass`). A stop request that outlasts its
    grace period ends it with `abandon()` from another thread: the report then holds what
    was done, the images cut short as ABANDONED, and those never started as STOPPING."""

    def __init__(
        self,
        config: Config,
        clients: Clients,
        options: SyncOptions,
        on_result: OnResult | None = None,
    ) -> None:
        self.config = config
        self.clients = clients
        self.options = options
        self.on_result = on_result
        self.started = time.monotonic()
        self.report = PassReport(
            command="plan" if options.dry_run else "sync",
            config_source=config.source,
            started_at=time.time(),
            run_id=structlog.contextvars.get_contextvars().get("run_id"),
        )
        self.written: set[str] = set()  # target repositories this pass pushed to
        self.events: EventPublisher | None = None
        self.jobs: list[CopyJob] = []  # what this pass set out to check
        self._lock = threading.Lock()  # the report, against abandon()
        self._recorded: set[str] = set()  # targets with a result
        self._copying: dict[str, ImageResult] = {}  # targets being copied, as far as they got
        self._abandoned = False

    def record(self, result: ImageResult) -> None:
        with self._lock:
            if self._abandoned:  # the report was written without it: it was cut short
                return
            result.finished_after = round(time.monotonic() - self.started, 3)
            self.report.images.append(result)
            self._recorded.add(result.target)
            self._copying.pop(result.target, None)
        failed = result.action is Action.FAILED
        # A console run leaves these to its per-image lines (the logger is silenced): the
        # event is not built for nobody, at thousands of images a pass.
        if IMAGE_EVENTS.isEnabledFor(logging.ERROR if failed else logging.INFO):
            fields = result.to_json()
            if failed:
                image_log.error("image_failed", **fields)
            else:
                image_log.info("image_done", **fields)
        if self.on_result is not None:
            self.on_result(result)
        moved = TagMoved.from_result(result) if result.action is Action.COPIED else None
        if moved is not None and self.events is not None:
            self.events.publish(moved)

    def target_refuses(self) -> bool:
        """Ping the target; if it cannot take images, fail them all before any pull."""
        try:
            self.clients.target.ping()
        except Exception as exc:
            error = ErrorInfo.from_exception(exc)
            for entry in self.config.images:
                result = ImageResult(entry.describe(), self._target_of(entry), error=error)
                result.platforms = str(entry.platforms) if entry.platforms else "all"
                self.record(result)
            return True
        return False

    def _target_of(self, entry: ImageEntry) -> str:
        """Where an entry lands, known without asking upstream: its reference for one
        written tag or digest, its repository for a tag list or rule."""
        several = bool(entry.tags or entry.rule)
        tag = entry.tags[0] if entry.tags else "latest" if several else entry.source.tag
        try:
            (job,) = _entry_jobs(self.config, entry, [tag], self.clients.target_registry)
        except ValueError:  # a name past the grammar's limits: its own error says so later
            return ""
        target = job.target
        return f"{target.registry}/{target.repository}" if several else str(target)

    def check_all(self, copier: ImageCopier, jobs: list[CopyJob]) -> list[_Pending]:
        """HEAD every image (free); record the current and failed ones, return the rest."""

        def check(order: int, job: CopyJob) -> _Pending | None:
            result = ImageResult(
                source=str(job.source),
                target=str(job.target),
                platforms=str(job.platforms) if job.platforms else "all",
            )
            try:
                with deadline(self.clients.timeouts.metadata, f"checking {job.source}"):
                    found = copier.check(job, self.clients.upstream(job.source.registry), result)
            except QuotaWait:
                return _Pending(job, result, None, order)  # checked again when it runs
            except Exception as exc:
                self.fail(result, exc)
                return None
            if self.options.checked_at is not None:
                self.options.checked_at[str(job.target)] = time.monotonic()
            # A current image still goes through the copy step when its artifacts are to
            # be checked; an immutable one already mirrored is not asked about at all.
            artifacts_due = (
                job.artifacts is not None and not self.options.dry_run and result.upstream_checked
            )
            if found.staleness is Staleness.CURRENT and not self.options.dry_run:
                # a setting ECR refused before is tried again, without a pull
                self.clients.settle_repository(job.target.repository)
            if found.staleness is Staleness.CURRENT and not artifacts_due:
                result.action = Action.SKIPPED
                self.record(result)
                return None
            return _Pending(job, result, found, order)

        with ContextPool(self.config.model.concurrency.images) as pool:
            checked = list(pool.map(check, range(len(jobs)), jobs))
        pending = [p for p in checked if p is not None]
        pending.sort(key=lambda p: (p.check.staleness if p.check else Staleness.CHANGED, p.order))
        return pending

    def fail(self, result: ImageResult, exc: BaseException) -> None:
        if not isinstance(exc, MirrorError | httpx.HTTPError):
            log.error("image_crashed", source=result.source, exc_info=exc)
        result.action = Action.FAILED
        result.error = ErrorInfo.from_exception(exc)
        self.record(result)

    def pull_through(self, jobs: list[CopyJob]) -> None:
        """Images an ECR pull-through cache serves: make sure of each rule (sync only) and
        pre-warm if asked; nothing is copied."""
        prefix = self.config.model.target.repository_prefix
        broken: dict[str, BaseException] = {}
        if not self.options.dry_run:
            for host in dict.fromkeys(job.source.registry for job in jobs):
                try:
                    self.clients.ensure_pull_through_cache(host, ptc_prefix(prefix, host))
                except Exception as exc:
                    broken[host] = exc
        for job in jobs:
            result = ImageResult(str(job.source), str(job.target), Action.PULL_THROUGH)
            host = job.source.registry
            if host in broken:
                self.fail(result, broken[host])
                continue
            if not self.options.dry_run and self.config.model.registries[host].prewarm:
                try:
                    warmed = self.clients.target.get_manifest(
                        job.target.repository, job.target.identifier
                    )
                except Exception as exc:
                    self.fail(result, exc)
                    continue
                result.target_digest = warmed.digest
            self.record(result)

    def plan(self, pending: list[_Pending]) -> None:
        """Say what each image would cost, and whether its registry's quota covers it."""
        needed: dict[str, int] = {}
        for item in pending:
            registry = item.job.source.registry
            needed[registry] = needed.get(registry, 0) + 1
            result = item.result
            result.action = Action.WOULD_COPY
            result.estimated_upstream_gets = item.check.pulls_needed if item.check else "1+"
            available = [m.budget.available() for m in self.clients.upstream(registry).members]
            if any(a is None for a in available):
                result.quota = "no limit advertised"
            else:
                left = sum(a for a in available if a is not None)
                covered = "covered" if needed[registry] <= left else "not covered"
                result.quota = f"{covered}: {left} pulls left above the reserve"
            self.record(result)

    def _lease(self, job: CopyJob) -> str | None:
        """With coordination, the lease on copying into the job's repository: its name
        once held, NotYet while another process holds it (or the table cannot say)."""
        coordinator = self.clients.coordinator
        if coordinator is None:
            return None
        name = repository_lease(job.target.repository)
        try:
            holder = coordinator.leases.take(name)
        except CoordinationError as exc:  # never copy what another process may be copying
            raise NotYet(LEASE_POLL_SECONDS, str(exc), code=exc.code) from None
        if holder is None:
            return name
        wait = min(LEASE_POLL_SECONDS, holder.expires_in) + random.uniform(0.0, 0.5)
        raise NotYet(
            wait,
            f"{holder.owner} is copying into {job.target.repository} "
            f"(its lease runs {holder.expires_in:.0f}s more unless renewed)",
            code="LEASED",
        )

    def copy(
        self, copier: ImageCopier, artifacts: ArtifactCopier, pending: list[_Pending]
    ) -> dict[str, float]:
        def work(item: _Pending, resumed: bool) -> None:
            upstream = self.clients.upstream(item.job.source.registry)
            result = item.result
            lease = self._lease(item.job)
            with self._lock:
                self._copying[result.target] = result
            try:
                with deadline(self.clients.timeouts.image, f"copying {item.job.source}"):
                    copier.copy(item.job, upstream, result, None if resumed else item.check)
                    self.copy_artifacts(artifacts, item.job, upstream, result)
            except QuotaWait:
                raise
            except Exception as exc:
                self.fail(item.result, exc)
                return
            finally:
                if lease is not None:
                    self._release(lease)
            if item.result.action is Action.COPIED:
                self.written.add(item.job.target.repository)
            self.record(item.result)

        def defer(item: _Pending, code: str, message: str) -> None:
            if code == "THROTTLED":  # no quota will come back: the registry refused
                item.result.action = Action.FAILED
                hint = (
                    "the registry kept answering 429 to too many requests: lower "
                    f"registries.{item.job.source.registry}.requests_per_second, sign in "
                    "(public.ecr.aws allows 10 a second then), or raise --max-wait"
                )
            else:
                item.result.action = Action.DEFERRED
                hint = DEFER_HINTS.get(code, DEFER_HINTS["QUOTA_DEFERRED"])
            item.result.error = ErrorInfo(code, message, hint)
            self.record(item.result)

        scheduler: QuotaScheduler[_Pending] = QuotaScheduler(
            self.config.model.concurrency.images, self.options.max_wait, stop=self.options.stop
        )
        outcome = scheduler.run([(p.job.source.registry, p) for p in pending], work, defer)
        self.report.retry_in = outcome.retry_in
        return outcome.waited

    def copy_artifacts(
        self, artifacts: ArtifactCopier, job: CopyJob, upstream: Upstream, result: ImageResult
    ) -> None:
        """The image's signatures, attestations and SBOMs. The image is in place by now:
        failing to copy them is a warning on its result (`artifacts_error`), never a
        failed image, unless `artifacts.require` asks for them."""
        if job.artifacts is None or not result.upstream_digest:
            return
        try:
            artifacts.copy(job, upstream, result.upstream_digest, result)
        except QuotaWait:
            raise
        except Exception as exc:
            if job.artifacts.require:
                raise
            result.artifacts_error = ErrorInfo.from_exception(exc)
            if isinstance(exc, RegistryError) and exc.status == 405:
                result.artifacts_error.hint = REFERRERS_REFUSED
            log.warning(
                "artifacts_not_copied", source=result.source, **asdict(result.artifacts_error)
            )

    def fill_replicas(self) -> None:
        """What a replica in this account lacks of the images already mirrored (ECR
        replicates only new pushes); a replica that could not be filled fails the pass."""
        if self.clients.replication is None:
            return
        fills = complete_replicas(
            self.report.images,
            self.clients.target,
            self.clients.target_registry,
            self.clients.replica_targets(),
            self.clients.retry,
            self.config.model.concurrency.blobs,
        )
        for fill in fills:
            self.report.replicas_filled.append(
                {"replica": fill.replica, "image": fill.image, "digest": fill.digest}
                | ({"error": fill.error.message} if fill.error else {})
            )
            if fill.error is not None:
                self.report.errors.append(
                    ErrorInfo(
                        fill.error.code,
                        f"replica {fill.replica} lacks {fill.image}: {fill.error.message}",
                        fill.error.hint or "the next pass tries again",
                    )
                )

    def check_image_quotas(self) -> None:
        """ECR refuses pushes past its images-per-repository quota: warn ahead of it."""
        if self.clients.ecr is None:
            return
        for repository in sorted(self.written):
            self.clients.ecr.warn_if_near_image_quota(repository)

    def usage(self, waited: dict[str, float]) -> list[RegistryUsage]:
        usage = []
        for upstream in self.clients.used_upstreams():
            credentials = []
            for member in upstream.members:
                seen = member.budget.last_seen
                credentials.append(
                    CredentialUsage(
                        credential=member.budget.label,
                        pulls=member.budget.spent,
                        limit=seen.limit if seen else None,
                        remaining=seen.remaining if seen else None,
                        window_seconds=seen.window if seen else None,
                        headers_overclaim=member.budget.overclaim,
                    )
                )
            usage.append(
                RegistryUsage(
                    upstream.registry,
                    credentials,
                    waited.get(upstream.registry, 0.0),
                    upstream.token_realm_retries(),
                )
            )
        return usage

    def run(self) -> PassReport:
        sinks = self.config.model.events
        self.events = EventPublisher(sinks) if sinks and not self.options.dry_run else None
        try:
            self._run()
        finally:
            if self.events is not None:  # stopping (SIGTERM): the grace period is short
                stopping = self.options.stop is not None and self.options.stop.is_set()
                self.events.close(timeout=STOPPING_FLUSH_SECONDS if stopping else FLUSH_SECONDS)
                self.report.events_sent = self.events.sent
                self.report.events_failed = self.events.failed
        self.report.seconds = time.monotonic() - self.started
        self.report.finished_at = time.time()
        coordinator = self.clients.coordinator
        if coordinator is not None and not self.options.dry_run:
            coordinator.announce(self._pass_record())
        return self.report

    def _pass_record(self) -> dict[str, float]:
        """This pass in the coordination table's record of the process (`mirror status`)."""
        return {
            "finished_at": round(self.report.finished_at or time.time(), 3),
            "seconds": round(self.report.seconds, 3),
            "copied": self.report.count(Action.COPIED),
            "skipped": self.report.count(Action.SKIPPED),
            "failed": self.report.count(Action.FAILED),
            "deferred": self.report.count(Action.DEFERRED),
        }

    def replicate(self) -> None:
        """The registry's replication rule for the mirror (sync only; with coordination,
        by the leader); what ECR refuses fails the pass but no image: the primary still
        gets every copy."""
        if not self.options.dry_run and self.clients.replication is not None and self.leads():
            self.clients.replication.ensure()

    def leads(self) -> bool:
        """Whether this process does what is done once for all (replication set-up,
        publishing the include, prune, restores): alone, always; with coordination,
        when it holds the leader lease."""
        coordinator = self.clients.coordinator
        if coordinator is None:
            return True
        try:
            return coordinator.lead()
        except CoordinationError as exc:
            log.warning("leader_unknown", error=str(exc), hint=exc.hint)
            return False

    def _release(self, lease: str) -> None:
        coordinator = self.clients.coordinator
        assert coordinator is not None, "a lease was taken through it"
        coordinator.leases.release(lease)

    def _run(self) -> None:
        if self.clients.ecr is not None and not self.options.dry_run:
            self.report.blob_mounting = self.clients.ecr.blob_mounting()
        if not self.target_refuses():
            self.replicate()
            now = time.monotonic()  # checked_at's clock: a wall clock that steps misleads
            unlisted: list[ImageEntry] = []

            def wanted(entry: ImageEntry) -> bool:
                if listing_due(entry, self.options, now):
                    return True
                unlisted.append(entry)
                return False

            resolved = resolve_jobs(self.config, self.clients, wanted)
            jobs, failures = resolved.jobs, resolved.failures
            self.report.dropped_tags = {k: len(v) for k, v in resolved.dropped_tags.items()}
            if self.options.checked_at is not None:  # a failed listing is retried next pass
                for failure in failures:
                    self.options.checked_at.pop(listing_key(failure.source), None)
            jobs = [j for j in jobs if in_shard(j, self.options.shard)]
            due = [j for j in jobs if is_due(j, self.options, now)]
            self.report.not_due = len(jobs) - len(due) + len(unlisted)
            jobs = self.jobs = due
            sink = progress.active()
            if sink is not None:  # every image this pass will report on
                sink.images_planned(len(jobs) + len(failures))
            for failure in failures:
                self.record(failure)
            cached = [j for j in jobs if pull_through_cached(self.config, j.source.registry)]
            self.pull_through(cached)
            jobs = [j for j in jobs if j not in cached]
            blobs = BlobCopier(
                self.clients.target, self.clients.retry, self.config.model.concurrency.blobs
            )
            copier = ImageCopier(
                self.clients.target, blobs, prepare=self.clients.prepare_repository
            )
            artifacts = ArtifactCopier(copier, self.clients.target)
            copier.before_copy = artifacts.require_signature
            try:
                pending = self.check_all(copier, jobs)
                waited: dict[str, float] = {}
                if self.options.dry_run:
                    self.plan(pending)
                else:
                    waited = self.copy(copier, artifacts, pending)
                    self.check_image_quotas()
                    self.fill_replicas()
            finally:
                blobs.close()
            self.report.registries = self.usage(waited)
        self.report.settings_refused = self.clients.refused_settings()
        if self.clients.ecr is not None:
            self.report.unowned_repositories = self.clients.ecr.unowned()

    def abandon(self) -> PassReport:
        """End the pass now, from another thread, with what it has: images being copied
        are ABANDONED (failed: their tag was never written), the rest STOPPING."""
        with self._lock:
            self._abandoned = True
            for job in self.jobs:
                target = str(job.target)
                if target in self._recorded:
                    continue
                result = self._copying.get(target) or ImageResult(str(job.source), target)
                if target in self._copying:
                    result.action = Action.FAILED
                    result.error = ErrorInfo("ABANDONED", "cut short by a stop", ABANDONED_HINT)
                else:
                    result.action = Action.DEFERRED
                    result.error = ErrorInfo(
                        "STOPPING", "not started: mirror is shutting down", "the next run does"
                    )
                result.finished_after = round(time.monotonic() - self.started, 3)
                self.report.images.append(result)
            self.report.seconds = time.monotonic() - self.started
            self.report.finished_at = time.time()
            return self.report


def run_pass(
    config: Config,
    clients: Clients,
    options: SyncOptions,
    on_result: OnResult | None = None,
) -> PassReport:
    return Pass(config, clients, options, on_result).run()
