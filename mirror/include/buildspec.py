"""The CodeBuild include: pull each mirrored image pinned by digest, tag it with the name
the Dockerfiles use, so unchanged `FROM nginx:1.16` lines resolve from the local store.

With the classic image store and the default `docker` builder (CodeBuild's standard
images), BuildKit uses a local image tagged `nginx:1.16` without asking Docker Hub. With
the containerd store or a `docker-container` builder it does not: there
`--build-context nginx:1.16=docker-image://<mirror ref>` redirects a FROM by name.

Only images that exist in the target are emitted, each pinned by the digest the target
holds now; an image not mirrored yet is left out with a warning, never emitted with a tag
that does not exist.
"""

from __future__ import annotations

import base64
import gzip
import io
import shlex
from dataclasses import dataclass
from typing import Any

import httpx
from ruamel.yaml import YAML

from mirror.config import Config
from mirror.engine.naming import target_repository
from mirror.engine.report import ErrorInfo
from mirror.engine.sync import pull_through_cached, resolve_jobs
from mirror.engine.wiring import Clients, on_demand_queue
from mirror.errors import MirrorError, printable
from mirror.include.dockerfile import BaseImage
from mirror.include.dockerfile_awk import DOCKERFILE_AWK
from mirror.include.misses import miss_functions
from mirror.include.shell import Var, Word, join, require_host, require_region, word
from mirror.oci.grammar import ecr_host, is_digest, is_repository, is_tag
from mirror.oci.reference import DEFAULT_REGISTRY, Reference, parse_reference

__all__ = [
    "BEGIN_MARK",
    "END_MARK",
    "Pull",
    "TargetUnreadableError",
    "collect_pulls",
    "compressed",
    "only_used",
    "render",
    "render_build_context",
    "render_commands",
    "render_fragment",
    "render_script",
]

DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
BEGIN_MARK = "echo 'mirror: pulling mirrored base images'"
END_MARK = "echo 'mirror: base images ready'"
PULL_ATTEMPTS = 3


@dataclass(frozen=True)
class Pull:
    source: Reference  # the upstream image, as the config names it
    path: str  # repository path in the target, with `@digest` or `:tag`
    names: tuple[str, ...]  # local names a FROM may spell it with
    # Not in the target yet (`on_demand`): the build reports it and waits for its tag.
    pending: bool = False

    def __post_init__(self) -> None:
        """The path is grammar-checked: it reaches shell, and it came from a registry."""
        if "@" in self.path:
            repository, _, reference = self.path.partition("@")
            valid = is_digest(reference)
        else:
            repository, _, reference = self.path.rpartition(":")
            valid = is_tag(reference)
        if not (valid and is_repository(repository)):
            raise ValueError(f"not a repository path with a tag or digest: {self.path!r}")


def spellings(source: Reference) -> list[str]:
    """Every way a Dockerfile or a user may write `source`: `nginx:1.16`,
    `docker.io/library/nginx:1.16`, `index.docker.io/...`; without the tag when it is
    `latest`. The script compares what its arguments name against these."""
    assert source.tag, "digest pins are not in the script"
    names = [f"{source.registry}/{source.repository}"]
    if source.registry == DEFAULT_REGISTRY:
        short = source.repository.removeprefix("library/")
        names = list(
            dict.fromkeys(
                [short, source.repository, f"docker.io/{short}"]
                + [f"{host}/{source.repository}" for host in DOCKER_HUB_HOSTS]
            )
        )
    written = [f"{name}:{source.tag}" for name in names]
    return written + (names if source.tag == "latest" else [])


def local_names(source: Reference) -> tuple[str, ...]:
    """The names the builder's image store gets, so every builder finds a FROM however it
    is written: Docker's familiar `nginx:1.16` for Docker Hub images (Docker normalises
    `docker.io/library/nginx:1.16` to it), and the fully qualified name, which podman and
    buildah look up as written (they do not normalise short names as Docker does)."""
    assert source.tag, "digest pins cannot be tagged locally"
    full = f"{source.registry}/{source.repository}:{source.tag}"
    if source.registry == DEFAULT_REGISTRY:
        return (f"{source.repository.removeprefix('library/')}:{source.tag}", full)
    return (full,)


class TargetUnreadableError(MirrorError):
    """The target could not say what it holds: an include rendered now would silently pull
    less, sending builds back to the upstream and its rate limits. Nothing is written."""

    code = "TARGET_UNREADABLE"


def collect_pulls(config: Config, clients: Clients) -> tuple[list[Pull], list[str]]:
    """What to pull, from the target's current state; and a warning per image left out
    (not mirrored yet). TargetUnreadableError when any image's target cannot be read."""
    resolved = resolve_jobs(config, clients)
    jobs, failures = resolved.jobs, resolved.failures
    warnings = [f"{f.source}: {f.error.message if f.error else 'not resolved'}" for f in failures]
    unreadable: list[str] = []
    pulls: list[Pull] = []
    for job in jobs:
        if job.source.tag is None:
            warnings.append(
                f"{job.source}: a digest pin cannot be tagged with the name a FROM uses; "
                "use --format build-context for it"
            )
            continue
        try:
            found = clients.target.head_manifest(job.target.repository, job.target.identifier)
        except (MirrorError, httpx.HTTPError) as exc:
            unreadable.append(f"{job.target}: {ErrorInfo.from_exception(exc).message}")
            continue
        pending = False
        if found is not None and found.digest:
            path = f"{job.target.repository}@{found.digest}"
        elif pull_through_cached(config, job.source.registry):  # cached on first pull
            path = f"{job.target.repository}:{job.target.identifier}"
        elif config.model.on_demand is not None:
            path, pending = f"{job.target.repository}:{job.target.identifier}", True
            warnings.append(
                f"{job.source}: not mirrored yet ({job.target}); builds report it and wait "
                "for it (MIRROR_ON_MISS)"
            )
        else:
            warnings.append(f"{job.source}: not mirrored yet ({job.target}); run mirror sync")
            continue
        pulls.append(Pull(job.source, path, local_names(job.source), pending))
    if unreadable:
        raise TargetUnreadableError(
            f"cannot read {len(unreadable)} of the target's images from "
            f"{clients.target_registry}; no include was written. First: {unreadable[0]}",
            hint="check the target's reachability and this role's ECR permissions; an include "
            "missing images would send builds back to the upstream",
        )
    return pulls, warnings


def only_used(
    config: Config, pulls: list[Pull], used: list[BaseImage]
) -> tuple[list[Pull], list[str]]:
    """The pulls the Dockerfiles' FROMs need, and a warning per FROM the config lacks.
    With `on_demand`, such a FROM is a pull too: the build reports it and waits for it
    where the daemon would copy it."""
    wanted: dict[str, BaseImage] = {}
    warnings = []
    for image in used:
        try:
            wanted[str(parse_reference(image.reference))] = image
        except MirrorError as exc:
            warnings.append(f"{image.path}:{image.line}: cannot read {image.reference!r}: {exc}")
    kept = [p for p in pulls if str(p.source) in wanted]
    covered = {str(p.source) for p in kept}
    for reference, image in wanted.items():
        if reference in covered:
            continue
        if config.model.on_demand is not None:
            kept.append(reported_pull(config, parse_reference(reference)))
            warnings.append(
                f"{image.path}:{image.line}: {image.reference} is not in the config: builds "
                f"report it and wait for it (MIRROR_ON_MISS); add {reference} to images: to "
                "mirror it ahead"
            )
            continue
        warnings.append(
            f"{image.path}:{image.line}: {image.reference} is not in the config "
            f"(add {reference} to images: so builds stop pulling it upstream)"
        )
    return kept, warnings


def reported_pull(config: Config, source: Reference) -> Pull:
    """An image the config lacks, where the daemon copies it when a build reports it."""
    repository = target_repository(source, config.model.target.repository_prefix)
    path = f"{repository}@{source.digest}" if source.digest else f"{repository}:{source.tag}"
    return Pull(source, path, local_names(source) if source.tag else (), pending=True)


def _is_ecr(config: Config) -> bool:
    return config.model.target.kind == "ecr"


def replica_registries(config: Config, primary: str) -> dict[str, str]:
    """Region -> registry host of each replica of the mirror (`target.replicate_to`)."""
    if not _is_ecr(config) or not config.model.target.replicate_to:
        return {}
    account = primary.split(".", 1)[0]
    return {
        d.region: ecr_host(d.account or account, d.region) for d in config.model.target.replicate_to
    }


_REGISTRY = Var("MIRROR_REGISTRY")


def _mirror_ref(pull: Pull) -> Word:
    """`"${MIRROR_REGISTRY}"/<path>`: the registry can be overridden at build time."""
    return (_REGISTRY, f"/{pull.path}")


def _prelude(config: Config, registry: str, replicas: dict[str, str]) -> list[str]:
    """Shell lines every format starts with: which registry to pull from (the replica in
    the build's own AWS_REGION when there is one, else the primary; MIRROR_REGISTRY
    overrides both), a login that always asks for the Region of the host it logs in to,
    once per registry however many pulls run at once, and the fallback to the primary for
    a digest a replica lacks (replication lags)."""
    lines = [f"mirror_primary={word(require_host(registry))}"]
    arms = " ".join(
        f"{require_region(r)}) mirror_default={word(require_host(h))} ;;"
        for r, h in sorted(replicas.items())
    )
    if arms:
        lines.append(
            f'case "${{AWS_REGION:-}}" in {arms} *) mirror_default="$mirror_primary" ;; esac'
        )
    else:
        lines.append('mirror_default="$mirror_primary"')
    lines.append('export MIRROR_REGISTRY="${MIRROR_REGISTRY:-$mirror_default}"')
    if _is_ecr(config):
        password = join(["aws", "ecr", "get-login-password", "--region"])
        login = join(["docker", "login", "--username", "AWS", "--password-stdin"])
        # One login per registry: the first pull to need it logs in (mkdir is atomic, so
        # pulls running at once agree who), the others wait for its outcome.
        lines.append("mirror_state=$(mktemp -d)")
        lines.append(
            "mirror_login() { "
            'mirror_mark="$mirror_state/login-$1"; '
            'if mkdir "$mirror_mark" 2>/dev/null; then '
            f'if mirror_password=$({password} "$(printf \'%s\' "$1" | cut -d. -f4)") && '
            f'printf \'%s\\n\' "$mirror_password" | {login} "$1" >&2; '
            'then : > "$mirror_mark/ok"; else : > "$mirror_mark/failed"; return 1; fi; '
            'else while [ ! -e "$mirror_mark/ok" ] && [ ! -e "$mirror_mark/failed" ]; '
            'do sleep 1; done; [ -e "$mirror_mark/ok" ]; fi; }'
        )
        lines.append('mirror_login "$MIRROR_REGISTRY"')
    else:
        lines.append("mirror_login() { :; }")
    # mirror_fetch PATH pulls PATH and prints the reference it pulled: the builder's image
    # store knows only that one, so the names are tagged from it (and a digest reference
    # can be no tag's target). A failure says what failed, in docker's words; only a
    # replica that lacks what the primary has is "replication lags".
    lines.append(
        "mirror_fetch() { "
        'if mirror_said=$(docker pull --quiet "$MIRROR_REGISTRY/$1" 2>&1); then '
        'echo "$MIRROR_REGISTRY/$1"; return 0; fi; '
        'if [ "$MIRROR_REGISTRY" = "$mirror_primary" ]; then '
        'echo "mirror: docker pull $MIRROR_REGISTRY/$1 failed: $mirror_said" >&2; return 1; fi; '
        'mirror_login "$mirror_primary" || { '
        'echo "mirror: docker pull $MIRROR_REGISTRY/$1 failed: $mirror_said; and no login to '
        '$mirror_primary" >&2; return 1; }; '
        'if mirror_primary_said=$(docker pull --quiet "$mirror_primary/$1" 2>&1); then '
        'echo "mirror: $MIRROR_REGISTRY lacks $1 (replication lags); pulled it from '
        '$mirror_primary" >&2; echo "$mirror_primary/$1"; return 0; fi; '
        'echo "mirror: docker pull failed from $MIRROR_REGISTRY ($mirror_said) and from '
        '$mirror_primary ($mirror_primary_said)" >&2; return 1; }'
    )
    return lines


def render_commands(
    config: Config, registry: str, pulls: list[Pull], replicas: dict[str, str] | None = None
) -> list[str]:
    """Buildspec `pre_build` commands, POSIX sh (buildspec 0.2 runs them in one shell); a
    failed pull after retries fails the build. Every word is built by mirror.include.shell."""
    commands = [BEGIN_MARK, *_prelude(config, registry, replicas or {})]
    if any(p.pending for p in pulls):
        commands += _misses(config)
    attempts = " ".join(str(i) for i in range(1, PULL_ATTEMPTS + 1))
    pulled = Var("MIRROR_REF")
    for pull in pulls:
        if pull.pending:
            commands.append(join(["mirror_wait_for", str(pull.source), pull.path, *pull.names]))
            continue
        failed = join(["echo", "mirror: could not pull", _mirror_ref(pull)])
        commands.append(
            f"for attempt in {attempts}; do "
            f"MIRROR_REF=$({join(['mirror_fetch', pull.path])}) && break; "
            f'[ "$attempt" = {PULL_ATTEMPTS} ] && {{ {failed} >&2; exit 1; }}; '
            "sleep $((attempt * 5)); done"
        )
        commands += [join(["docker", "tag", pulled, name]) for name in pull.names]
    commands += ['rm -rf "${mirror_state:-}"', END_MARK]
    return commands


def render_fragment(
    config: Config, registry: str, pulls: list[Pull], replicas: dict[str, str] | None = None
) -> str:
    commands = render_commands(config, registry, pulls, replicas)
    document: dict[str, Any] = {"version": 0.2, "phases": {"pre_build": {"commands": commands}}}
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.dump(document, out)
    header = (
        "# Generated by `mirror buildspec`: pulls the mirrored base images pinned by digest\n"
        "# and tags them with the names the Dockerfiles use. Merge into your buildspec's\n"
        "# pre_build, or use `mirror buildspec --merge buildspec.yml`.\n"
    )
    return header + out.getvalue()


_SCRIPT = """\
#!/bin/sh
# Generated by `mirror buildspec --format script` from {config}.
# Pulls the mirrored base images pinned by digest and tags them with the names the
# Dockerfiles use, so unchanged FROM lines resolve locally. POSIX sh: run it with sh or
# bash. Override with AWS_REGION, MIRROR_REGISTRY and MIRROR_PULL_PARALLEL.
set -eu

{prelude}
mirror_config={config_word}
PARALLEL="${{MIRROR_PULL_PARALLEL:-4}}"

pull_and_tag() {{
  path="$1"
  ref="$MIRROR_REGISTRY/$1"
  shift
  for attempt in {attempts}; do
    if pulled=$(mirror_fetch "$path"); then
      for name in "$@"; do
        docker tag "$pulled" "$name"
      done
      return 0
    fi
    echo "mirror: pulling $ref for $* failed (attempt $attempt of {last})" >&2
    [ "$attempt" = {last} ] || sleep $((attempt * 5))
  done
  echo "mirror: could not pull $ref for $*: is it mirrored? (mirror sync)" >&2
  return 1
}}

# With arguments, only what they name: each file is read as a Dockerfile (FROM,
# COPY --from=, RUN --mount=...from=, # syntax=), anything else is an image as written.
# The awk program is data for awk: its $ are awk's, never the shell's.
# shellcheck disable=SC2016
MIRROR_DOCKERFILE_AWK={awk}
mirror_filtering=$#
mirror_wanted=""
for mirror_arg in "$@"; do
  if [ -f "$mirror_arg" ]; then
    mirror_wanted="$mirror_wanted
$(awk "$MIRROR_DOCKERFILE_AWK" "$mirror_arg")"
  else
    mirror_wanted="$mirror_wanted
$mirror_arg"
  fi
done
mirror_known=""
mirror_wants() {{
  for spelling in "$@"; do
    mirror_known="$mirror_known
$spelling"
  done
  [ "$mirror_filtering" -gt 0 ] || return 0
  for spelling in "$@"; do
    if printf '%s\\n' "$mirror_wanted" | grep -Fqx -- "$spelling"; then
      return 0
    fi
  done
  return 1
}}

{misses}
pids=""
running=0
failed=0
wait_all() {{
  for pid in $pids; do
    wait "$pid" || failed=1
  done
  pids=""
  running=0
}}
mirror_pull() {{
  pull_and_tag "$@" &
  pids="$pids $!"
  running=$((running + 1))
  [ "$running" -lt "$PARALLEL" ] || wait_all
}}
mirror_background() {{
  "$@" &
  pids="$pids $!"
}}

# One image a line: the names it may be written with, then
# mirror_pull <repository path>@<digest> <local name>...
{images}
wait_all
if [ "$mirror_filtering" -gt 0 ]; then
  while IFS= read -r wanted; do
    [ -n "$wanted" ] || continue
    printf '%s\\n' "$mirror_known" | grep -Fqx -- "$wanted" && continue
    if [ "$mirror_on_demand" = 1 ]; then
      mirror_background mirror_on_miss "$wanted"
    elif [ "${{MIRROR_STRICT:-0}}" = 1 ]; then
      echo "mirror: $wanted is not mirrored (MIRROR_STRICT=1): add" \\
        "'- $wanted' to images: in $mirror_config, then mirror sync" >&2
      failed=1
    else
      echo "mirror: $wanted is not mirrored: the build pulls it upstream" \\
        "(MIRROR_STRICT=1 fails instead)" >&2
    fi
  done <<MIRROR_WANTED
$mirror_wanted
MIRROR_WANTED
  wait_all
fi
rm -rf "${{mirror_state:-}}"
[ "$failed" = 0 ] || exit 1
echo "mirror: base images ready"
"""


def _misses(config: Config) -> list[str]:
    """The miss handling (mirror/include/misses.py), where `on_demand` asks for it."""
    queue = on_demand_queue(config)
    return miss_functions(config, queue) if queue else []


def _script_line(pull: Pull) -> str:
    wants = join(["mirror_wants", *spellings(pull.source)])
    if pull.pending:
        waits = ["mirror_background", "mirror_wait_for", str(pull.source), pull.path, *pull.names]
        return f"{wants} && {join(waits)}"
    return f"{wants} && {join(['mirror_pull', pull.path, *pull.names])}"


def render_script(
    config: Config, registry: str, pulls: list[Pull], replicas: dict[str, str] | None = None
) -> str:
    name = printable(config.source.rsplit("/", 1)[-1], limit=200)
    misses = _misses(config)
    return _SCRIPT.format(
        misses="\n".join([*misses, f"mirror_on_demand={1 if misses else 0}"]),
        config=name,
        config_word=word(name),
        prelude="\n".join(_prelude(config, registry, replicas or {})),
        attempts=" ".join(str(i) for i in range(1, PULL_ATTEMPTS + 1)),
        last=PULL_ATTEMPTS,
        awk=shlex.quote(DOCKERFILE_AWK),
        images="\n".join(_script_line(p) for p in pulls),
    )


def render(
    fmt: str,
    config: Config,
    registry: str,
    pulls: list[Pull],
    replicas: dict[str, str] | None = None,
) -> str:
    """The include in one of the formats `--format` names."""
    if fmt == "script":
        return render_script(config, registry, pulls, replicas)
    if fmt == "build-context":
        return render_build_context(config, registry, pulls, replicas)
    return render_fragment(config, registry, pulls, replicas)


_BUILD_CONTEXT_HEADER = """\
# Generated by `mirror buildspec --format build-context`. Source it, then build:
#   . ./mirror-contexts.sh && docker buildx build $MIRROR_BUILD_CONTEXTS .
# It logs in to the mirror (the replica in the build's AWS_REGION when there is one, the
# primary for an image the replica lacks yet) and sets MIRROR_BUILD_CONTEXTS to one
# --build-context name=docker-image://... a local name.
"""

# mirror_source PATH prints where BuildKit is to read PATH from: the registry chosen, or
# the primary when a replica lacks it yet (asked without pulling: the build reads it).
_SOURCE = (
    "mirror_source() { "
    'if [ "$MIRROR_REGISTRY" = "$mirror_primary" ] || '
    'docker buildx imagetools inspect "$MIRROR_REGISTRY/$1" >/dev/null 2>&1; then '
    'echo "$MIRROR_REGISTRY/$1"; return 0; fi; '
    'mirror_login "$mirror_primary" || return 1; '
    'echo "mirror: $MIRROR_REGISTRY lacks $1 (replication lags); the build reads it from '
    '$mirror_primary" >&2; echo "$mirror_primary/$1"; }'
)


def render_build_context(
    config: Config, registry: str, pulls: list[Pull], replicas: dict[str, str] | None = None
) -> str:
    """A POSIX sh snippet to source: the login, and `--build-context` flags in
    MIRROR_BUILD_CONTEXTS (BuildKit resolves `docker-image://` itself, so its registry
    credentials must be in place first). Sourced, so a failure returns, never exits."""
    lines = [*_prelude(config, registry, replicas or {}), _SOURCE, 'MIRROR_BUILD_CONTEXTS=""']
    for pull in pulls:
        if pull.pending:  # a context needs a reference that exists now: left out
            continue
        lines.append(f"mirror_ref=$({join(['mirror_source', pull.path])}) || return 1")
        for name in pull.names:
            flag = word(f" --build-context {name}=docker-image://")
            lines.append(f'MIRROR_BUILD_CONTEXTS="$MIRROR_BUILD_CONTEXTS"{flag}"$mirror_ref"')
    lines += ['rm -rf "${mirror_state:-}"', "export MIRROR_BUILD_CONTEXTS"]
    return _BUILD_CONTEXT_HEADER + "\n".join(lines) + "\n"


_COMPRESSED_SCRIPT = """\
#!/bin/sh
# `mirror buildspec --format script`, gzip+base64 to fit where it is published
set -eu
mirror_include=$(mktemp)
trap 'rm -f "$mirror_include"' EXIT
printf '%s' '{payload}' | base64 -d | gunzip -c > "$mirror_include"
sh "$mirror_include" "$@"
"""

_COMPRESSED_SNIPPET = """\
# `mirror buildspec --format build-context`, gzip+base64 to fit where it is published
eval "$(printf '%s' '{payload}' | base64 -d | gunzip -c)"
"""

# The script template's own comment lines: for a person reading the plain script, left
# out of the compressed one (every other line is kept as it is).
_SCRIPT_COMMENTS = frozenset(
    line.replace("{{", "{").replace("}}", "}")
    for line in _SCRIPT.splitlines()[1:]
    if line.lstrip().startswith("#") and "shellcheck" not in line and "{config}" not in line
)


def compressed(fmt: str, text: str) -> str | None:
    """The same include in fewer bytes (a shell wrapper that unpacks and runs it), for a
    format a shell runs; None for the buildspec fragment, which is YAML to merge. The
    payload is base64: nothing in it can end the quoted word it sits in."""
    wrapper = {"script": _COMPRESSED_SCRIPT, "build-context": _COMPRESSED_SNIPPET}.get(fmt)
    if wrapper is None:
        return None
    lines = text.splitlines(keepends=True)
    if fmt == "script":  # the shebang and the generated-from line stay
        lines = lines[:2] + [
            line for line in lines[2:] if line.rstrip("\n") not in _SCRIPT_COMMENTS
        ]
    payload = base64.b64encode(gzip.compress("".join(lines).encode(), mtime=0)).decode("ascii")
    return wrapper.format(payload=payload)
