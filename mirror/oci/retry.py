"""One retry policy for transient registry failures, built on tenacity.

Callers wrap a whole unit of work (a manifest request, or HEAD+POST+GET+PUT of a blob), so
a half-sent streaming body is never replayed on its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    stop_after_attempt,
    wait_random_exponential,
)

from mirror.errors import RegistryError, TooManyRequestsError, is_retryable

__all__ = ["RetryPolicy"]

T = TypeVar("T")
THROTTLE_RETRY_SECONDS = (0.5, 1.5)
THROTTLE_ATTEMPTS = 2  # an upstream's throttled request, before its registry pauses
log = structlog.get_logger(__name__)


def _host_of(exc: BaseException | None) -> str | None:
    """Which registry or CDN the failed request went to, for the `retrying` line."""
    if isinstance(exc, httpx.HTTPError):
        try:
            return exc.request.url.host
        except RuntimeError:  # raised before a request existed
            return None
    return getattr(exc, "host", None)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    # False for upstreams: a spent pull quota (a 429 that says so) is waited out by the
    # scheduler for the whole registry, not retried request by request.
    retry_quota: bool = True

    def _should_retry(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome and state.outcome.failed else None
        if exc is None:
            return False
        if not self.retry_quota and isinstance(exc, TooManyRequestsError):
            # One more try a second later; a registry that still throttles pauses as a
            # whole in the scheduler (its images wait together, not each on its own).
            return not exc.quota and state.attempt_number < THROTTLE_ATTEMPTS
        return is_retryable(exc)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TooManyRequestsError) and not exc.quota and exc.retry_after is None:
            # A throttle passes within a second (public.ecr.aws allows one request a
            # second): no exponential wait, and jitter so concurrent images spread out.
            return random.uniform(*THROTTLE_RETRY_SECONDS)
        backoff = wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait)(state)
        if isinstance(exc, RegistryError) and exc.retry_after is not None:
            return max(backoff, min(exc.retry_after, self.max_wait * 4))
        return backoff

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying",
            host=_host_of(exc),
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 2),
            error=str(exc),
        )

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying transient failures; the last error propagates unchanged.

        The first attempt runs outside tenacity: almost every call succeeds at once, and
        building a Retrying costs as much CPU as a no-op pass's URL and headers together.
        A first failure is handed to tenacity as its first attempt's outcome, so the
        decisions (whether, how long, the `retrying` line) are the same either way."""
        try:
            return fn()
        except Exception as exc:  # tenacity judges it, as it would any attempt
            first: Exception | None = exc

        def attempt() -> T:
            nonlocal first
            if first is not None:
                failure, first = first, None
                raise failure
            return fn()

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=self._should_retry,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(attempt)
