"""What the include does with `on_demand` about an image a build needs and the mirror lacks
(not in the config, or not copied yet): report it to the mirror's queue with
`aws sqs send-message`, then follow MIRROR_ON_MISS:

- `wait:SECONDS` (default `wait:90`): pull the image's tag from the mirror every few
  seconds (no other AWS call) until it is there, then tag it with the names a FROM uses;
  a refusal the daemon wrote (read with `docker manifest inspect` from the target) ends
  the wait early. Past the wait or refused, the build pulls it upstream, or with
  MIRROR_STRICT=1 fails.
- `upstream`: report it, and let the build pull it upstream now.
- `fail`: report it, and fail the build naming the image and the policy.

Where the image lands in the mirror is worked out in the script itself from the
reference as written, by the rules mirror/engine/naming.py and mirror/oci/reference.py
follow (tests/unit/include/test_misses.py holds the two to the same answers): every part
is checked against the OCI grammar first, and a reference outside it is never reported.
"""

from __future__ import annotations

from mirror.config import Config
from mirror.config.model import queue_region
from mirror.engine.ondemand import REFUSED_ANNOTATION, REFUSED_AT_ANNOTATION, refusals_repository
from mirror.include.shell import word
from mirror.oci.reference import REGISTRY_ALIASES

__all__ = ["DEFAULT_ON_MISS", "miss_functions"]

DEFAULT_ON_MISS = "wait:90"
POLL_SECONDS = 5

# The OCI grammar, as POSIX extended regular expressions for grep -E.
_COMPONENT = "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = f"{_COMPONENT}(/{_COMPONENT})*"
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = f"({_LABEL}(\\.{_LABEL})*|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{{1,5}})?"
_TAG = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_DIGEST = "sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}"


def _alias_arms() -> str:
    return " ".join(f"{host}) mirror_alias={alias} ;;" for host, alias in REGISTRY_ALIASES.items())


def miss_functions(config: Config, queue_url: str) -> list[str]:
    """Shell lines defining mirror_on_miss WRITTEN and mirror_wait_for WRITTEN PATH NAME...
    (the first works out PATH and the names from WRITTEN, then calls the second)."""
    prefix = config.model.target.repository_prefix.strip("/")
    region = queue_region(queue_url)
    send = ["aws", "sqs", "send-message", "--queue-url", queue_url]
    if region:
        send += ["--region", region]
    refused = refusals_repository(config)
    config_name = config.source.rsplit("/", 1)[-1]
    return [
        f"mirror_config_name={word(config_name)}",
        # mirror_parse REF: "<path in the mirror> <fully qualified name>", or failure for
        # anything outside the grammar (never reported, never used in a command)
        "mirror_parse() { "
        "mirror_ref=$1; "
        # one line: grep below checks each line of its input, and a second line would
        # ride along with a first that matches
        "[ \"$(printf '%s' \"$mirror_ref\" | grep -c '')\" = 1 ] || return 1; "
        "printf '%s\\n' \"$mirror_ref\" | grep -Eqx '[][A-Za-z0-9._:/@-]{1,512}' || return 1; "
        "mirror_digest=; "
        "case $mirror_ref in *@*) mirror_digest=${mirror_ref#*@}; mirror_ref=${mirror_ref%%@*} ;; "
        "esac; "
        f"[ -z \"$mirror_digest\" ] || printf '%s\\n' \"$mirror_digest\" | grep -Eqx '{_DIGEST}' "
        "|| return 1; "
        "mirror_host=docker.io; mirror_rest=$mirror_ref; mirror_first=${mirror_ref%%/*}; "
        'if [ "$mirror_first" != "$mirror_ref" ]; then case $mirror_first in '
        "*.*|*:*|localhost) mirror_host=$mirror_first; mirror_rest=${mirror_ref#*/} ;; esac; fi; "
        f"printf '%s\\n' \"$mirror_host\" | grep -Eqx '{_HOST}' || return 1; "
        "case $mirror_host in index.docker.io|registry-1.docker.io) mirror_host=docker.io ;; esac; "
        "mirror_tag=; mirror_last=${mirror_rest##*/}; "
        "case $mirror_last in *:*) mirror_tag=${mirror_last##*:}; mirror_rest=${mirror_rest%:*}; "
        f"printf '%s\\n' \"$mirror_tag\" | grep -Eqx '{_TAG}' || return 1 ;; esac; "
        'if [ "$mirror_host" = docker.io ]; then case $mirror_rest in */*) ;; '
        '*) mirror_rest="library/$mirror_rest" ;; esac; fi; '
        f"printf '%s\\n' \"$mirror_rest\" | grep -Eqx '{_REPOSITORY}' || return 1; "
        '[ "${#mirror_rest}" -le 255 ] || return 1; '
        '[ -n "$mirror_tag$mirror_digest" ] || mirror_tag=latest; '
        f"case $mirror_host in {_alias_arms()} "
        "*) mirror_alias=$(printf '%s' \"$mirror_host\" | tr '[:upper:]' '[:lower:]' | "
        "sed -e 's/[^a-z0-9.][^a-z0-9.]*/-/g' -e 's/^[-.]*//' -e 's/[-.]*$//') ;; esac; "
        f'mirror_repo={word(prefix + "/" if prefix else "")}"$mirror_alias/$mirror_rest"; '
        '[ "${#mirror_repo}" -le 255 ] || return 1; '
        'if [ -n "$mirror_digest" ]; then '
        'echo "$mirror_repo@$mirror_digest $mirror_host/$mirror_rest@$mirror_digest"; '
        'else echo "$mirror_repo:$mirror_tag $mirror_host/$mirror_rest:$mirror_tag"; fi; }',
        # mirror_report WRITTEN: one message to the mirror's queue; a failure is a warning
        "mirror_report() { "
        "mirror_project=; mirror_account=; mirror_build=; "
        'case "${CODEBUILD_BUILD_ARN:-}" in arn:*:codebuild:*:*:build/*) '
        "mirror_account=$(printf '%s' \"$CODEBUILD_BUILD_ARN\" | cut -d: -f5); "
        "mirror_build=${CODEBUILD_BUILD_ARN#*:build/}; mirror_project=${mirror_build%%:*} ;; esac; "
        "printf '%s\\n' \"$mirror_account\" | grep -Eqx '[0-9]{12}' || mirror_account=; "
        "printf '%s\\n' \"$mirror_project\" | grep -Eqx '[A-Za-z0-9][A-Za-z0-9_-]{0,254}' || "
        "mirror_project=; "
        "printf '%s\\n' \"$mirror_build\" | grep -Eqx '[A-Za-z0-9][A-Za-z0-9_:.-]{0,300}' || "
        "mirror_build=; "
        'mirror_body=$(printf \'{"version":1,"image":"%s","project":"%s","account":"%s",'
        '"build":"%s","time":"%s"}\' "$1" "$mirror_project" "$mirror_account" '
        '"$mirror_build" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"); '
        f'if {" ".join(word(w) for w in send)} --message-body "$mirror_body" >/dev/null; then '
        'echo "mirror: $1 is not mirrored: reported to the mirror" >&2; '
        'else echo "mirror: $1 is not mirrored, and reporting it failed (aws sqs send-message)" '
        ">&2; fi; }",
        # mirror_refusal WRITTEN SINCE: the reason the daemon refused it, if it did after
        # SINCE (epoch seconds, less a minute for clocks): an older refusal may be stale
        "mirror_refusal() { "
        "mirror_key=$(printf '%s' \"$1\" | sha256sum | cut -c1-64); "
        f'mirror_said=$(docker manifest inspect "$MIRROR_REGISTRY"/{word(refused)}:r-"$mirror_key" '
        "2>/dev/null) || return 1; "
        f"mirror_at=$(printf '%s\\n' \"$mirror_said\" | sed -n "
        f'\'s/.*"{REFUSED_AT_ANNOTATION}": *"\\([0-9]\\{{1,12\\}}\\)".*/\\1/p\' | head -n 1); '
        '[ -n "$mirror_at" ] && [ "$mirror_at" -ge $(($2 - 60)) ] || return 1; '
        f'printf \'%s\\n\' "$mirror_said" | sed -n \'s/.*"{REFUSED_ANNOTATION}": '
        '*"\\([^"]*\\)".*/\\1/p\' | '
        "head -n 1 | tr -cd '[:print:]'; }",
        # mirror_upstream WRITTEN WHY: what a miss the mirror will not fill comes to
        "mirror_upstream() { "
        'if [ "${MIRROR_STRICT:-0}" = 1 ]; then '
        'echo "mirror: $1: $2 (MIRROR_STRICT=1: add it to images: in $mirror_config_name, or '
        'to on_demand.allow)" >&2; '
        "return 1; fi; "
        'echo "mirror: $1: $2; the build pulls it upstream" >&2; }',
        # mirror_wait_for WRITTEN PATH NAME...: report, then as MIRROR_ON_MISS says
        "mirror_wait_for() { "
        "mirror_written=$1; mirror_path=$2; shift 2; "
        f"mirror_mode=${{MIRROR_ON_MISS:-{DEFAULT_ON_MISS}}}; "
        "mirror_seconds=${mirror_mode#wait:}; "
        "case $mirror_mode in upstream|fail) ;; wait:[0-9]*) "
        "case $mirror_seconds in *[!0-9]*) mirror_mode=invalid ;; esac ;; "
        "*) mirror_mode=invalid ;; esac; "
        'if [ "$mirror_mode" = invalid ]; then echo "mirror: MIRROR_ON_MISS=${MIRROR_ON_MISS:-}: '
        'write wait:SECONDS, upstream or fail" >&2; return 1; fi; '
        'mirror_reported_at=$(date +%s); mirror_report "$mirror_written"; '
        'case $mirror_mode in upstream) echo "mirror: $mirror_written: the build pulls it '
        'upstream now, and the mirror catches up (MIRROR_ON_MISS=upstream)" >&2; return 0 ;; '
        'fail) echo "mirror: $mirror_written is not mirrored (MIRROR_ON_MISS=fail): the mirror '
        'copies what on_demand allows in $mirror_config_name" >&2; return 1 ;; esac; '
        "mirror_until=$(( $(date +%s) + mirror_seconds )); "
        "while :; do "
        'if mirror_pulled=$(mirror_fetch "$mirror_path" 2>/dev/null); then '
        'case $mirror_written in *@*) ;; *) for mirror_name in "$@"; do '
        'docker tag "$mirror_pulled" "$mirror_name"; done ;; esac; '
        'echo "mirror: $mirror_written copied on demand: pulled $mirror_pulled" >&2; return 0; fi; '
        'if mirror_why=$(mirror_refusal "$mirror_written" "$mirror_reported_at"); then '
        'mirror_upstream "$mirror_written" "refused by the mirror: $mirror_why"; return $?; fi; '
        '[ "$(date +%s)" -lt "$mirror_until" ] || break; '
        f"sleep {POLL_SECONDS}; done; "
        'mirror_upstream "$mirror_written" "not copied within ${mirror_seconds}s"; }',
        # mirror_on_miss WRITTEN: an image the config does not name
        "mirror_on_miss() { "
        'if ! mirror_parsed=$(mirror_parse "$1"); then '
        'mirror_upstream "$1" "not an image reference the mirror can copy"; return $?; fi; '
        'mirror_wait_for "$1" "${mirror_parsed%% *}" "$1" "${mirror_parsed#* }"; }',
    ]
