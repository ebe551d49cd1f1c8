"""Shards split images without overlap; daemon schedules read as written."""

import pytest
from pydantic import ValidationError

from mirror.config.model import DaemonSettings
from mirror.engine.copy import CopyJob
from mirror.engine.sync import in_shard
from mirror.oci.reference import parse_reference


def jobs(count: int) -> list[CopyJob]:
    return [
        CopyJob(parse_reference(f"img{i}:1"), parse_reference(f"r.example/mirror/img{i}:1"))
        for i in range(count)
    ]


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_every_image_is_in_exactly_one_shard(shards):
    for job in jobs(200):
        assert sum(in_shard(job, (i, shards)) for i in range(shards)) == 1


def test_shards_are_stable_and_roughly_even():
    first = [sum(in_shard(j, (i, 4)) for j in jobs(400)) for i in range(4)]
    again = [sum(in_shard(j, (i, 4)) for j in jobs(400)) for i in range(4)]
    assert first == again
    assert min(first) > 60


@pytest.mark.parametrize(
    ("settings", "interval"),
    [({}, 21600.0), ({"every": "30s"}, 30.0), ({"at": ["02:00", "14:00"]}, 43200.0),
     ({"at": ["01:00", "03:00"]}, 79200.0)],
)  # fmt: skip
def test_the_interval_is_the_longest_gap_between_passes(settings, interval):
    assert DaemonSettings(**settings).interval_seconds == interval


@pytest.mark.parametrize(
    "settings",
    [{"every": "soon"}, {"at": ["25:00"]}, {"at": []}, {"every": "1h", "at": ["02:00"]}],
)
def test_bad_schedules_are_refused(settings):
    with pytest.raises(ValidationError):
        DaemonSettings(**settings)
