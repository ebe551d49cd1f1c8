"""An upstream under an attacker's control: what it sends must not run a command, move
another tag, swap a pinned digest, reach the account's credentials, or stop the pass.

Each case runs end to end through `mirror sync` against a real registry behind
tests/support/hostile.py, and asserts what did NOT happen as well as what did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support import skopeo
from tests.support.hostile import BEARER_TOKEN, HostileFront, Recorder, Served, gzip_bomb
from tests.support.images import DOCKER_LIST, DOCKER_MANIFEST, Image, random_blob
from tests.support.shims import Shims

pytestmark = pytest.mark.e2e

HUB = "mirror/docker-hub/library"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def front(upstream):
    with HostileFront(upstream.url) as hostile:
        yield hostile


def hostile_tags(pwn: Path) -> list[object]:
    """Tags a registry may list: each breaks out of a quote, a word, a line or a path."""
    return [
        f"1.0'; touch {pwn}; '",
        f"$(touch {pwn})",
        f"`touch {pwn}`",
        "1.0 python:3.12-slim",
        "1.0\nnginx",
        "1.0\n",
        "../../nginx/manifests/1.16",
        "a/../../../../library/nginx/manifests/1.16",
        "..",
        "-rm",
        ".hidden",
        "v" * 129,
        "\uff11.0",  # a fullwidth digit: \\w would take it
        "1.0;id",
        42,
        None,
    ]


def test_crafted_tags_are_dropped_and_reach_no_url_no_other_tag_and_no_shell(
    front, target, seeder, mirror, write_config, tmp_path
):
    pwn = tmp_path / "pwned"
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    app = {
        tag: seeder.push("library/app", tag, Image([random_blob(100)])) for tag in ("1.0", "1.1")
    }
    victim_config = write_config(target, "- nginx:1.16", docker_io=front.url, name="victim.yaml")
    assert mirror("sync", config=victim_config).code == 0
    before = target.catalog()
    front.extra_tags["library/app"] = hostile_tags(pwn)
    config = write_config(
        target, '- nginx:1.16\n- image: app\n  tags: {regex: ".*"}', docker_io=front.url
    )
    front.paths.clear()

    run = mirror("sync", config=config)

    assert run.code == 0, run.out + run.err
    assert run.report["summary"]["invalid_tags_dropped"] == len(hostile_tags(pwn))
    assert list(run.report["dropped_tags"].values()) == [len(hostile_tags(pwn))]
    after = target.catalog()
    assert after == {**before, f"{HUB}/app": app}  # nothing else moved
    for tag in app:
        skopeo.copy_all_verifies(target.host, f"{HUB}/app:{tag}")
    assert not any(".." in p or "%" in p or "'" in p or "$" in p for p in front.paths)
    assert not pwn.exists()

    shims = Shims(tmp_path)
    digests = [("nginx", before[f"{HUB}/nginx"]["1.16"]), *(("app", d) for d in app.values())]
    expected = [
        ["docker", "pull", "--quiet", f"{target.host}/{HUB}/{name}@{digest}"]
        for name, digest in digests
    ]
    for calls in _run_every_include(mirror, config, shims, tmp_path):
        pulls = sorted(c for c in calls if c[1] == "pull")
        assert pulls == sorted(expected)
        tags = sorted(c[3] for c in calls if c[1] == "tag")
        short = ["app:1.0", "app:1.1", "nginx:1.16"]
        assert tags == sorted(short + [f"docker.io/library/{name}" for name in short])
        assert all(len(c) == 4 for c in calls if c[1] == "tag")
    assert not pwn.exists()


def _run_every_include(mirror, config, shims: Shims, tmp_path: Path):
    """Each include format and the lock-pinned script, run under sh and bash: the calls."""
    fragment = mirror("buildspec", config=config)
    assert fragment.code == 0, fragment.err
    commands = YAML(typ="safe").load(fragment.out)["phases"]["pre_build"]["commands"]
    as_script = tmp_path / "fragment.sh"
    as_script.write_text("set -e\n" + "\n".join(commands) + "\n")
    script, locked = tmp_path / "pull.sh", tmp_path / "locked.sh"
    lock = tmp_path / "mirror.lock.json"
    assert (
        mirror("buildspec", "--format", "script", "--output", str(script), config=config).code == 0
    )
    assert mirror("lock", "--output", str(lock), config=config).code == 0
    run = mirror(
        "buildspec", "--format", "script", "--lock", str(lock), "--output", str(locked),
        config=config,
    )  # fmt: skip
    assert run.code == 0, run.err
    for path in (as_script, script, locked):
        checked = subprocess.run(
            ["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout
        for shell in ("sh", "bash"):
            done = shims.run(shell, path)
            assert done.returncode == 0, (path.name, shell, done.stderr)
            yield shims.calls()
    snippet = tmp_path / "contexts.sh"
    run = mirror("buildspec", "--format", "build-context", "--output", str(snippet), config=config)
    assert run.code == 0, run.err
    words = shims.build_contexts(snippet)
    assert words[::2] == ["--build-context"] * (len(words) // 2) and len(words) % 2 == 0
    assert all("=docker-image://" in flag for flag in words[1::2])


def test_a_pin_whose_head_announces_another_digest_writes_nothing(
    front, target, seeder, mirror, write_config
):
    pinned = seeder.push("library/pinned", "real", Image([random_blob(100)]))
    other = seeder.push("library/pinned", "other", Image([random_blob(100)]))
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    front.head_digest[f"library/pinned:{pinned}"] = other
    config = write_config(target, f"- pinned@{pinned}\n- nginx:1.16", docker_io=front.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    failed = run.image(f"pinned@{pinned}")
    assert failed["action"] == "failed" and failed["error"]["code"] == "DIGEST_MISMATCH"
    assert other in failed["error"]["message"]
    assert f"{HUB}/pinned" not in target.catalog()
    assert run.image("nginx:1.16")["action"] == "copied"
    assert mirror("lock", config=config).code == 1  # nothing to record for the pin


def test_a_pin_served_with_other_bytes_is_refused(front, target, seeder, mirror, write_config):
    pinned = seeder.push("library/pinned", "real", Image([random_blob(100)]))
    impostor = Image([random_blob(100)])
    seeder.push("library/pinned", "impostor", impostor)
    front.manifests[f"library/pinned:{pinned}"] = Served(
        impostor.manifest, {"Content-Type": DOCKER_MANIFEST, "Docker-Content-Digest": pinned}
    )
    config = write_config(target, f"- pinned@{pinned}", docker_io=front.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image(f"pinned@{pinned}")["error"]["code"] == "DIGEST_MISMATCH"
    assert target.catalog() == {}


@pytest.mark.parametrize(
    "child",
    [
        {"digest": "sha512:aa/../../../library/nginx/manifests/1.16", "size": 10},
        {"digest": "md5:" + "a" * 32, "size": 10},
        {"digest": "sha256:" + "A" * 64, "size": 10},
        {"digest": "sha256:" + "a" * 63, "size": 10},
        {"digest": "sha256:" + "a" * 64, "size": "10"},
        {"digest": "sha256:" + "a" * 64, "size": -1},
    ],
    ids=["path", "md5", "uppercase", "short", "string-size", "negative-size"],
)
def test_an_index_child_with_a_malformed_descriptor_fails_that_image_only(
    front, target, seeder, mirror, write_config, child
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    index = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {
                "mediaType": DOCKER_MANIFEST,
                **child,
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    }
    front.serve_manifest("library/multi:1", json.dumps(index).encode(), DOCKER_LIST)
    config = write_config(target, "- multi:1\n- nginx:1.16", docker_io=front.url)
    front.paths.clear()

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("multi:1")["error"]["code"] == "INVALID_UPSTREAM_DATA", run.out
    assert run.image("nginx:1.16")["action"] == "copied"
    assert set(target.catalog()) == {f"{HUB}/nginx"}
    assert not any(".." in p or "md5" in p for p in front.paths)


def test_oversized_and_gzip_bombed_manifests_are_refused_without_being_held(
    front, target, seeder, mirror, write_config, tmp_path
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    padding = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "x": "a" * (5 * 2**20)}
    front.serve_manifest("library/huge:1", json.dumps(padding).encode(), DOCKER_MANIFEST)
    bomb = gzip_bomb(512 * 2**20)  # ~500 KiB on the wire, 512 MiB inflated
    front.serve_manifest("library/bomb:1", bomb, DOCKER_MANIFEST, **{"Content-Encoding": "gzip"})
    config = write_config(target, "- huge:1\n- bomb:1\n- nginx:1.16", docker_io=front.url)
    report = tmp_path / "out.json"

    # Measured by bench/rusage.py: a process started from this (large) test process would
    # report this process's pages as its own.
    measured = tmp_path / "rusage.txt"
    sync = [sys.executable, "-m", "mirror", "sync", "--config", str(config)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.rusage", str(measured), "--", *sync, "--report", str(report)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    peak_kib = int(measured.read_text().split()[1])

    assert done.returncode == 1
    images = {i["source"]: i for i in json.loads(report.read_text())["images"]}
    for name in ("huge", "bomb"):
        error = images[f"docker.io/library/{name}:1"]["error"]
        assert error["code"] == "INVALID_UPSTREAM_DATA", error
    assert images["docker.io/library/nginx:1.16"]["action"] == "copied"
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib // 1024} MiB"


@pytest.mark.parametrize(
    ("entry", "source"),
    [("- slow:1", "slow:1"), ("- image: slow\n  tags: {latest: 1}", "slow {latest 1}")],
    ids=["manifest", "tag-list"],
)
def test_a_dripping_body_fails_its_own_entry_within_the_deadline(
    front, target, seeder, mirror, write_config, entry, source
):
    seeder.push("library/slow", "1", Image([random_blob(100)]))
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    front.drip.add("library/slow")
    config = write_config(
        target, f"{entry}\n- nginx:1.16", docker_io=front.url, extra="timeouts: {metadata: 2s}\n"
    )
    started = time.monotonic()

    run = mirror("sync", config=config)

    assert time.monotonic() - started < 10
    assert run.code == 1
    assert run.image(source)["error"]["code"] == "DEADLINE_EXCEEDED"
    assert run.image("nginx:1.16")["action"] == "copied"


def test_endless_pagination_stops_at_the_page_limit(front, target, seeder, mirror, write_config):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    front.endless.add("library/endless")
    config = write_config(
        target,
        "- image: endless\n  tags: {latest: 1}\n- nginx:1.16",
        docker_io=front.url,
        extra="timeouts: {metadata: 120s}\n",
    )

    run = mirror("sync", config=config)

    assert run.code == 1
    error = run.image("endless {latest 1}")["error"]
    assert error["code"] == "INVALID_UPSTREAM_DATA" and "1000 pages" in error["message"]
    assert sum("tags/list" in p for p in front.paths) == 1000
    assert run.image("nginx:1.16")["action"] == "copied"


@pytest.mark.parametrize(
    "body",
    [b"<html>rate limited</html>", b"[1, 2]", b'{"tags": "latest"}', b"[" * 200_000],
    ids=["html", "list", "tags-not-a-list", "nesting-bomb"],
)
def test_a_tag_list_that_is_not_one_fails_its_entry_and_the_pass_goes_on(
    front, target, seeder, mirror, write_config, body
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    front.tag_bodies["library/broken"] = body
    config = write_config(
        target, "- image: broken\n  tags: {latest: 1}\n- nginx:1.16", docker_io=front.url
    )

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("broken {latest 1}")["error"]["code"] == "INVALID_UPSTREAM_DATA"
    assert run.image("nginx:1.16")["action"] == "copied"
    assert "Traceback" not in run.out + run.err


def with_credentials(url: str, user_env: str, password_env: str) -> str:
    return (
        f"registries:\n  docker.io:\n    url: {url}\n"
        f"    credentials: {{username_env: {user_env}, password_env: {password_env}}}\n"
    )


def test_a_next_page_on_another_origin_gets_no_request_and_no_credentials(
    upstream, target, seeder, mirror, write_config, monkeypatch
):
    seeder.push("library/app", "1.0", Image([random_blob(100)]))
    monkeypatch.setenv("HOSTILE_USER", "ci-bot")
    monkeypatch.setenv("HOSTILE_PASSWORD", "s3cret-password")
    with (
        HostileFront(upstream.url, basic=("ci-bot", "s3cret-password")) as front,
        Recorder() as elsewhere,
    ):
        front.next_page["library/app"] = f"{elsewhere.url}/v2/library/app/tags/list?last=1.0"
        config = write_config(
            target,
            "- image: app\n  tags: {latest: 1}",
            extra=with_credentials(front.url, "HOSTILE_USER", "HOSTILE_PASSWORD"),
        )

        run = mirror("sync", config=config)

    assert run.code == 1
    error = run.image("app {latest 1}")["error"]
    assert error["code"] == "INVALID_UPSTREAM_DATA" and "another origin" in error["message"]
    assert elsewhere.requests == []


def test_a_cdn_challenge_never_gets_the_account_credentials(
    hub, target, seeder, mirror, write_config, hub_account
):
    hub_account("s3cret-token")
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    with Recorder() as realm, Recorder() as cdn:
        cdn.answer = Served(b"", {"WWW-Authenticate": f'Bearer realm="{realm.url}/token"'}, 401)
        hub.cdn_url = cdn.url  # blob GETs are redirected to the attacker's CDN
        config = write_config(
            target, "- nginx:1.16", extra=with_credentials(hub.url, "HUB_USER", "HUB_TOKEN")
        )

        run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("nginx:1.16")["error"]["code"] == "UNAUTHORIZED"
    assert cdn.requests and all("Authorization" not in h for _, _, h in cdn.requests)
    # At most an anonymous token request: the CDN's realm never hears of the account.
    assert all("Authorization" not in h for _, _, h in realm.requests)
    assert not any("ci-bot" in path for _, path, _ in realm.requests + cdn.requests)


def test_registry_error_text_cannot_forge_console_lines(
    front, target, seeder, mirror, write_config
):
    seeder.push("library/forge", "1", Image([random_blob(100)]))
    forged = "no\n\x1b[32mcopied     docker.io/library/nginx:1.16 -> ok\x1b[0m"
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": forged}]}).encode()
    front.get_errors["library/forge"] = Served(body, {"Content-Type": "application/json"}, 400)
    config = write_config(target, "- forge:1", docker_io=front.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    assert "\x1b" not in run.out + run.err
    assert not any(line.startswith("copied") for line in run.out.splitlines())
    assert "\\x1b[32mcopied" in run.out  # shown, escaped


def test_a_tampered_lock_is_refused_and_nothing_is_written(
    front, target, seeder, mirror, write_config, tmp_path
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, "- nginx:1.16", docker_io=front.url)
    assert mirror("sync", config=config).code == 0
    lock = tmp_path / "mirror.lock.json"
    assert mirror("lock", "--output", str(lock), config=config).code == 0
    good = json.loads(lock.read_text())
    entry = good["images"][0]
    other = "sha256:" + "0" * 64
    tampered = {
        "digest disagrees": {**entry, "digest": other},
        "shell in target": {**entry, "target": entry["target"] + "$(touch /tmp/x)"},
        "another registry": {**entry, "target": entry["target"].replace(target.host, "evil.test")},
        "quote in source": {**entry, "source": "docker.io/library/nginx:1.16'"},
    }
    moved = entry["target"].replace(target.host, "evil.test")
    tampered_locks = {  # the include would log in to and pull from these hosts
        why: {**good, "images": [image]} for why, image in tampered.items()
    } | {
        "the lock's registry": {**good, "registry": "evil.test", "images": [
            {**entry, "target": moved}]},
        "a replica the config never named": {**good, "replicas": {"eu-west-1": "evil.test"}},
    }  # fmt: skip
    for why, lock_body in tampered_locks.items():
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(lock_body))
        out = tmp_path / "pull.sh"

        run = mirror(
            "buildspec", "--format", "script", "--lock", str(path), "--output", str(out),
            config=config,
        )  # fmt: skip

        assert run.code == 2, why
        assert not out.exists(), why


def test_every_registry_request_asks_for_identity_encoding(target, mirror, write_config):
    with Recorder(Served(b"", status=404)) as registry:
        config = write_config(
            target, "- image: app\n  tags: {latest: 1}\n- nginx:1.16", docker_io=registry.url
        )

        mirror("sync", config=config)

    assert registry.requests
    assert all(h.get("Accept-Encoding") == "identity" for _, _, h in registry.requests)


def peak_rss_of_sync(config: Path, report: Path, measured: Path) -> tuple[int, int]:
    """`mirror sync` in a process of its own, measured by bench/rusage.py: (exit code,
    peak RSS in KiB). A process started from this (large) test process would report this
    process's pages as its own."""
    sync = [sys.executable, "-m", "mirror", "sync", "--config", str(config)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.rusage", str(measured), "--", *sync, "--report", str(report)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    return done.returncode, int(measured.read_text().split()[1])


UNASKED = 600 * 2**20  # what drove the process past 600 MiB


@pytest.mark.parametrize("answer", ["manifest redirect", "blob redirect", "challenged 401"])
def test_a_huge_body_mirror_never_asked_for_is_not_read(
    upstream, target, seeder, write_config, tmp_path, answer
):
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(2000)]))
    realm = Recorder(Served(json.dumps({"token": BEARER_TOKEN}).encode()))
    with HostileFront(upstream.url) as hostile, realm:
        if answer == "manifest redirect":
            hostile.redirect_bodies["library/nginx"] = UNASKED
        elif answer == "blob redirect":
            hostile.blob_redirect_body = UNASKED
        else:  # every request first gets a Bearer challenge with a huge body
            hostile.bearer_realm = f"{realm.url}/token"
            hostile.challenge_body = UNASKED
        config = write_config(
            target, "- nginx:1.16", docker_io=hostile.url, extra="timeouts: {metadata: 20s}\n"
        )
        started = time.monotonic()

        code, peak_kib = peak_rss_of_sync(config, tmp_path / "out.json", tmp_path / "rusage.txt")

    assert code == 0
    assert time.monotonic() - started < 60
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib // 1024} MiB"  # not the 600 MiB sent
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest


def test_a_chunked_blob_that_drips_stops_at_the_image_deadline(
    front, target, seeder, write_config, mirror
):
    seeder.push("library/slow", "1", Image([random_blob(4000)]))
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    front.chunked_blob_drip.add("library/slow")  # one byte a second, no Content-Length
    front.drip_seconds = 1.0
    config = write_config(
        target, "- slow:1\n- nginx:1.16", docker_io=front.url, extra="timeouts: {image: 5s}\n"
    )
    started = time.monotonic()

    run = mirror("sync", config=config)

    elapsed = time.monotonic() - started
    assert elapsed < 12, f"still copying after {elapsed:.0f} s with a 5 s limit"
    assert run.code == 1
    assert run.image("slow:1")["error"]["code"] == "DEADLINE_EXCEEDED"
    assert "slow" not in str(target.catalog())  # no tag points at half a blob


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f000001", "127.1"])
def test_a_redirect_to_an_address_spelled_as_a_number_is_never_followed(
    front, target, seeder, mirror, write_config, spelling
):
    # 127.0.0.1 under another spelling stands in for 169.254.169.254 written the same way
    # (2852039166): no test may send a packet to the metadata service itself.
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    with Recorder() as metadata:
        front.blob_redirect_to = f"http://{spelling}:{metadata.port}/latest/meta-data/"
        config = write_config(target, "- nginx:1.16", docker_io=front.url)

        run = mirror("sync", config=config)

    assert run.code == 1
    assert metadata.requests == []  # no connection was made to it
    error = run.image("nginx:1.16")["error"]
    assert error["code"] == "INVALID_UPSTREAM_DATA" and "not followed" in error["message"]


def test_a_repository_mirror_did_not_create_is_written_to_but_never_taken_over(
    ecr, hub, seeder, tmp_path, mirror
):
    import boto3

    from tests.e2e.test_ecr import ecr_config

    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    client = boto3.client("ecr")
    name = f"{HUB}/nginx"  # another team's repository, where mirror would put nginx
    arn = client.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")[
        "repository"]["repositoryArn"]  # fmt: skip
    theirs = {"Version": "2012-10-17", "Statement": [{"Sid": "Theirs", "Effect": "Allow",
              "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
              "Action": ["ecr:BatchGetImage"]}]}  # fmt: skip
    client.set_repository_policy(repositoryName=name, policyText=json.dumps(theirs))
    config = ecr_config(
        tmp_path, ecr, hub.url, "- nginx:1.16",
        repository="repository: {pull_access: {organization_id: o-a1b2c3d4e5}}",
    )  # fmt: skip

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert run.image("nginx:1.16")["action"] == "copied"
    assert run.report["unowned_repositories"] == [name]
    assert "repositories mirror did not create" in run.out
    # What did NOT happen: no ownership tag, no settings, no policy statement of mirror's.
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == []
    (repository,) = client.describe_repositories(repositoryNames=[name])["repositories"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert json.loads(client.get_repository_policy(repositoryName=name)["policyText"]) == theirs
    with pytest.raises(client.exceptions.LifecyclePolicyNotFoundException):
        client.get_lifecycle_policy(repositoryName=name)


def test_idle_connections_from_one_address_cannot_shut_out_the_containers_health_check():
    import socket

    from mirror.service.health import MAX_CONNECTIONS, HealthServer, Page
    from mirror.service.healthcheck import ask
    from tests.support.registry import free_port

    port = free_port()
    server = HealthServer("127.0.0.1", port, {"/healthz": lambda: Page(200, "text/plain", b"ok")})
    server.start()
    crowd = []
    try:
        # A scraper's network, as seen from the daemon: another address than the
        # container's own (127.0.0.2 stands in for it on this machine).
        for _ in range(MAX_CONNECTIONS + 50):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            crowd.append(sock)
        time.sleep(0.5)

        live, body = ask("127.0.0.1", port, timeout=2)

        assert live and body == "ok"  # the container's own check is answered
        held = 0
        for sock in crowd:  # what the server let that one address keep
            sock.setblocking(False)
            try:
                held += sock.recv(1) != b""
            except BlockingIOError:
                held += 1  # still open: nothing to read yet
        assert held <= MAX_CONNECTIONS // 16  # a small share: PER_ADDRESS
    finally:
        for sock in crowd:
            sock.close()
        server.stop()


def test_a_bucket_of_another_account_receives_no_include_and_serves_no_config(
    aws, target, write_config, mirror, tmp_path, monkeypatch, capsys
):
    import boto3

    from mirror.console.cli import main

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="builds")  # in moto's account, 123456789012
    config = write_config(target, "- nginx:1.16")
    s3.put_object(Bucket="builds", Key="mirror.yaml", Body=config.read_bytes())
    # As if someone else had registered the bucket name: it is not this account's.
    monkeypatch.setenv("MIRROR_S3_BUCKET_OWNER", "999988887777")

    read = main(["validate", "--config", "s3://builds/mirror.yaml"])
    read_error = capsys.readouterr().err
    published = mirror(
        "buildspec", "--format", "script", "--output", "s3://builds/pull.sh", config=config
    )

    assert read == 2 and "AccessDenied" in read_error
    assert published.code == 1 and "AccessDenied" in published.err
    listed = s3.list_objects_v2(Bucket="builds").get("Contents", [])
    assert [o["Key"] for o in listed] == ["mirror.yaml"]  # no include was written there
