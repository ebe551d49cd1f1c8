"""A faithful local ECR: moto in server mode for the control plane, and a distribution
registry with htpasswd `AWS` / `123456789012-auth-token` (moto's token) as the data plane.
The server runs in this process, which lets it learn what moto 5.2 lacks and AWS documents."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from moto.server import ThreadedMotoServer

from tests.support.moto_alarms import teach_moto_alarms
from tests.support.registry import LocalRegistry, free_port

__all__ = ["ACCOUNT", "ECR_CREDS", "REGION", "FakeEcr", "fake_ecr", "moto_server"]

ACCOUNT = "123456789012"
REGION = "us-east-1"
ECR_CREDS = f"AWS:{ACCOUNT}-auth-token"


class FakeEcr:
    def __init__(self, endpoint: str, data_plane: LocalRegistry) -> None:
        self.endpoint = endpoint
        self.data_plane = data_plane
        self.host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }


def _teach_moto_since_image_pulled() -> None:
    """moto 5.2's lifecycle validation predates ECR's `sinceImagePulled` count type, which
    the ECR user guide documents ("Lifecycle policy properties": countType imageCountMoreThan,
    sinceImagePushed, sinceImagePulled, sinceImageTransitioned). The server runs in this
    process, so the set it checks against is extended with the documented value."""
    from moto.ecr import policy_validation

    policy_validation.VALID_SELECTION_COUNT_TYPE_VALUES.add("sinceImagePulled")


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on 127.0.0.1; yields its endpoint URL."""
    _teach_moto_since_image_pulled()
    teach_moto_alarms()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._port}"
    finally:
        server.stop()


@contextmanager
def fake_ecr(endpoint: str) -> Iterator[FakeEcr]:
    """A fresh ECR on a running moto server: control plane reset, new data plane."""
    httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
    with LocalRegistry(htpasswd=("AWS", f"{ACCOUNT}-auth-token")) as registry:
        yield FakeEcr(endpoint, registry)
