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

import io
import shlex
from dataclasses import dataclass
from typing import Any

import httpx
from ruamel.yaml import YAML

from mirror.config import Config
from mirror.dockerfile import BaseImage
from mirror.errors import MirrorError
from mirror.oci.reference import DEFAULT_REGISTRY, Reference, parse_reference
from mirror.sync import pull_through_cached, resolve_jobs
from mirror.wiring import Clients

__all__ = [
    "BEGIN_MARK",
    "END_MARK",
    "Pull",
    "collect_pulls",
    "only_used",
    "render",
    "render_build_context",
    "render_commands",
    "render_fragment",
    "render_script",
]

BEGIN_MARK = "echo 'mirror: pulling mirrored base images'"
END_MARK = "echo 'mirror: base images ready'"
PULL_ATTEMPTS = 3


@dataclass(frozen=True)
class Pull:
    source: Reference  # the upstream image, as the config names it
    path: str  # repository path in the target, with `@digest` or `:tag`
    names: tuple[str, ...]  # local names a FROM may spell it with


def local_names(source: Reference) -> tuple[str, ...]:
    """Docker's familiar spelling: `nginx:1.16` for Docker Hub official images (Docker
    normalises `docker.io/library/nginx:1.16` to the same name), the full name otherwise."""
    assert source.tag, "digest pins cannot be tagged locally"
    if source.registry == DEFAULT_REGISTRY:
        return (f"{source.repository.removeprefix('library/')}:{source.tag}",)
    return (f"{source.registry}/{source.repository}:{source.tag}",)


def collect_pulls(config: Config, clients: Clients) -> tuple[list[Pull], list[str]]:
    """What to pull, from the target's current state; and a warning per image left out."""
    jobs, failures = resolve_jobs(config, clients)
    warnings = [f"{f.source}: {f.error.message if f.error else 'not resolved'}" for f in failures]
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
            warnings.append(f"{job.source}: cannot read {job.target}: {exc}")
            continue
        if found is not None and found.digest:
            path = f"{job.target.repository}@{found.digest}"
        elif pull_through_cached(config, job.source.registry):  # cached on first pull
            path = f"{job.target.repository}:{job.target.identifier}"
        else:
            warnings.append(f"{job.source}: not mirrored yet ({job.target}); run mirror sync")
            continue
        pulls.append(Pull(job.source, path, local_names(job.source)))
    return pulls, warnings


def only_used(pulls: list[Pull], used: list[BaseImage]) -> tuple[list[Pull], list[str]]:
    """The pulls the Dockerfiles' FROMs need; and a warning per FROM the config lacks."""
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
        if reference not in covered:
            warnings.append(
                f"{image.path}:{image.line}: {image.reference} is not in the config "
                f"(add {reference} to images: so builds stop pulling it upstream)"
            )
    return kept, warnings


def _ecr_region(config: Config) -> str | None:
    target = config.model.target
    return target.region if target.kind == "ecr" else None


def render_commands(config: Config, registry: str, pulls: list[Pull]) -> list[str]:
    """Buildspec `pre_build` commands (one shell; a failed pull after retries fails the build)."""
    commands = [BEGIN_MARK, f'export MIRROR_REGISTRY="${{MIRROR_REGISTRY:-{registry}}}"']
    region = _ecr_region(config)
    if region is not None:
        commands.append(
            f'aws ecr get-login-password --region "${{AWS_REGION:-{region}}}" | '
            'docker login --username AWS --password-stdin "$MIRROR_REGISTRY"'
        )
    for pull in pulls:
        ref = f'"$MIRROR_REGISTRY/{pull.path}"'
        commands.append(
            f"for attempt in {' '.join(str(i) for i in range(1, PULL_ATTEMPTS + 1))}; do "
            f"docker pull --quiet {ref} && break; "
            f'[ "$attempt" = {PULL_ATTEMPTS} ] && '
            f"{{ echo 'mirror: could not pull {pull.source}' >&2; exit 1; }}; "
            "sleep $((attempt * 5)); done"
        )
        commands += [f"docker tag {ref} {shlex.quote(name)}" for name in pull.names]
    commands.append(END_MARK)
    return commands


def render_fragment(config: Config, registry: str, pulls: list[Pull]) -> str:
    document: dict[str, Any] = {
        "version": 0.2,
        "phases": {"pre_build": {"commands": render_commands(config, registry, pulls)}},
    }
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
#!/usr/bin/env bash
# Generated by `mirror buildspec --format script` from {config}.
# Pulls the mirrored base images pinned by digest and tags them with the names the
# Dockerfiles use, so unchanged FROM lines resolve locally. Override with AWS_REGION,
# MIRROR_REGISTRY and MIRROR_PULL_PARALLEL.
set -euo pipefail

export MIRROR_REGISTRY="${{MIRROR_REGISTRY:-{registry}}}"
PARALLEL="${{MIRROR_PULL_PARALLEL:-4}}"
{login}
pull_and_tag() {{
  local ref="$MIRROR_REGISTRY/$1" attempt name
  shift
  for attempt in {attempts}; do
    if docker pull --quiet "$ref" >/dev/null; then
      for name in "$@"; do
        docker tag "$ref" "$name"
      done
      return 0
    fi
    echo "mirror: pulling $ref for $* failed (attempt $attempt of {last})" >&2
    [ "$attempt" = {last} ] || sleep $((attempt * 5))
  done
  echo "mirror: could not pull $ref for $*: is it mirrored? (mirror sync)" >&2
  return 1
}}
export -f pull_and_tag

# One image a line: <repository path>@<digest> <local name>...
xargs -P "$PARALLEL" -L 1 bash -c 'pull_and_tag "$@"' _ <<'IMAGES'
{images}
IMAGES
echo "mirror: {count} base images ready"
"""


def render_script(config: Config, registry: str, pulls: list[Pull]) -> str:
    region = _ecr_region(config)
    login = (
        f'aws ecr get-login-password --region "${{AWS_REGION:-{region}}}" |\n'
        '  docker login --username AWS --password-stdin "$MIRROR_REGISTRY"\n'
        if region is not None
        else ""
    )
    return _SCRIPT.format(
        config=config.source.rsplit("/", 1)[-1],
        registry=registry,
        login=login,
        attempts=" ".join(str(i) for i in range(1, PULL_ATTEMPTS + 1)),
        last=PULL_ATTEMPTS,
        images="\n".join(" ".join([p.path, *p.names]) for p in pulls),
        count=len(pulls),
    )


def render(fmt: str, config: Config, registry: str, pulls: list[Pull]) -> str:
    """The include in one of the formats `--format` names."""
    if fmt == "script":
        return render_script(config, registry, pulls)
    if fmt == "build-context":
        return render_build_context(registry, pulls)
    return render_fragment(config, registry, pulls)


def render_build_context(registry: str, pulls: list[Pull]) -> str:
    """`--build-context name=docker-image://ref` flags, one a line."""
    return "".join(
        f"--build-context {name}=docker-image://{registry}/{pull.path}\n"
        for pull in pulls
        for name in pull.names
    )
