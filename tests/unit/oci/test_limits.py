"""Deadlines: the earliest one set around a piece of work bounds every wait inside it."""

import time

import httpx
import pytest

from mirror.errors import DeadlineExceededError
from mirror.oci.limits import check_deadline, deadline, request_timeout


def test_an_inner_deadline_cannot_outlive_the_outer_one():
    with deadline(0.05, "the image"), deadline(60, "a manifest"):
        time.sleep(0.06)
        with pytest.raises(DeadlineExceededError) as caught:
            check_deadline()
    assert "the image" in caught.value.message and caught.value.code == "DEADLINE_EXCEEDED"


def test_socket_waits_are_capped_by_what_is_left_of_the_deadline():
    base = httpx.Timeout(connect=10, read=30, write=30, pool=300)
    assert request_timeout(base) == base  # no deadline: the configured timeouts
    with deadline(2, "a listing"):
        capped = request_timeout(base)
    assert capped.read is not None and capped.read <= 2 and capped.pool is not None
    assert capped.pool <= 2


def test_no_deadline_is_left_behind():
    with deadline(0.01, "short"):
        pass
    time.sleep(0.02)
    check_deadline()  # nothing raised: the deadline ended with its block
