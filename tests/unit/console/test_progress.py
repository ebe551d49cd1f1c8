"""The live display says per image how far, how fast, how long, and who waits for quota."""

import io

from rich.console import Console

from mirror.console.live import LiveProgress


def rendered(draw) -> str:
    out = io.StringIO()
    live = LiveProgress(Console(file=out, force_terminal=True, width=140))
    with live:
        draw(live)
        live._progress.refresh()
        text = out.getvalue()
    return text


def test_an_image_shows_its_bytes_rate_and_time_left():
    def draw(live):
        live.blob_started("docker.io/library/python:3.13", "sha256:a", 300 * 2**20)
        live.blob_advanced("docker.io/library/python:3.13", "sha256:a", 100 * 2**20)

    text = rendered(draw)
    assert "docker.io/library/python:3.13" in text
    assert "100.0/300.0 MiB" in text


def test_a_retried_blob_is_counted_once():
    def draw(live):
        live.blob_started("img", "sha256:a", 10 * 2**20)
        live.blob_advanced("img", "sha256:a", 6 * 2**20)
        live.blob_started("img", "sha256:a", 10 * 2**20)  # the retry starts over
        live.blob_advanced("img", "sha256:a", 2 * 2**20)

    assert "2.0/10.0 MiB" in rendered(draw)


def test_a_quota_wait_says_which_registry_how_many_images_and_how_long():
    def draw(live):
        live.quota_wait("docker.io", 3, 37.2, 552.0)

    assert "docker.io: 3 images wait 37 s for quota, max-wait left 9m 12s" in rendered(draw)


def test_finished_images_leave_the_display_and_count_as_done():
    def draw(live):
        live.blob_started("img", "sha256:a", 2**20)
        live.quota_wait("docker.io", 1, 5, 60)
        live.image_done("docker.io/library/img:1", "copied")

    text = rendered(draw)
    assert "images done: 1" in text
