"""skopeo, the independent client that checks what mirror wrote."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile

__all__ = ["copy_all_verifies", "raw_digest", "raw_manifest"]


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=120)


def raw_manifest(host: str, reference: str, creds: str | None = None) -> bytes:
    auth = [f"--creds={creds}"] if creds else []
    result = _run("inspect", "--raw", "--tls-verify=false", *auth, f"docker://{host}/{reference}")
    if result.returncode != 0:
        raise AssertionError(f"skopeo inspect {reference}: {result.stderr.decode()}")
    return result.stdout


def raw_digest(host: str, reference: str, creds: str | None = None) -> str:
    return "sha256:" + hashlib.sha256(raw_manifest(host, reference, creds)).hexdigest()


def copy_all_verifies(host: str, reference: str, creds: str | None = None) -> None:
    """`skopeo copy --all` into a dir: every manifest and blob is fetched and verified."""
    auth = [f"--src-creds={creds}"] if creds else []
    with tempfile.TemporaryDirectory() as target:
        result = _run(
            "copy",
            "--all",
            "--src-tls-verify=false",
            *auth,
            f"docker://{host}/{reference}",
            f"dir:{target}",
        )
    if result.returncode != 0:
        raise AssertionError(f"skopeo copy --all {reference}: {result.stderr.decode()}")
