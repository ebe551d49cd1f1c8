"""An upstream pulls each digest once a pass, and pays for the GET a lying HEAD needs."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mirror.engine.quota import Budget
from mirror.engine.upstream import Member, Upstream
from mirror.errors import HeadUnsupportedError, NotFoundError
from mirror.oci.types import OCI_INDEX, parse_manifest

RAW = b'{"schemaVersion": 2, "mediaType": "%s", "manifests": []}' % OCI_INDEX.encode()
MANIFEST = parse_manifest(RAW, OCI_INDEX)


class FakeClient:
    """A registry that takes a while to answer a GET and cannot answer HEAD."""

    def __init__(self) -> None:
        self.gets: list[str] = []
        self.lock = threading.Lock()

    def head_manifest(self, repository, reference):
        raise HeadUnsupportedError("HEAD answered 405", status=405, code="HEAD_UNSUPPORTED")

    def get_manifest(self, repository, reference):
        with self.lock:
            self.gets.append(reference)
        time.sleep(0.1)
        if reference == "missing":
            raise NotFoundError("no such manifest", status=404)
        return MANIFEST


def upstream_of(client: FakeClient) -> tuple[Upstream, Budget]:
    budget = Budget("r.test", "anonymous")
    return Upstream("r.test", [Member(client, budget)]), budget  # type: ignore[arg-type]


def test_images_asking_for_one_digest_at_once_share_one_get():
    client = FakeClient()
    upstream, budget = upstream_of(client)
    with ThreadPoolExecutor(4) as pool:
        pulled = list(pool.map(lambda _: upstream.pull("a", "tag", MANIFEST.digest), range(4)))
    assert [m for m, _ in pulled] == [MANIFEST] * 4
    assert sorted(paid for _, paid in pulled) == [False, False, False, True]
    assert client.gets == [MANIFEST.digest] and budget.spent == 1


def test_a_head_the_registry_cannot_answer_is_one_paid_get_that_the_copy_reuses():
    client = FakeClient()
    upstream, budget = upstream_of(client)
    found, paid = upstream.find_manifest("a", "1")
    assert found == MANIFEST.descriptor and paid is True
    assert upstream.pull("a", "1", found.digest) == (MANIFEST, False)
    assert client.gets == ["1"] and budget.spent == 1


def test_a_get_that_finds_nothing_is_absent_and_spends_nothing():
    client = FakeClient()
    upstream, budget = upstream_of(client)
    assert upstream.find_manifest("a", "missing") == (None, False)
    assert budget.spent == 0
