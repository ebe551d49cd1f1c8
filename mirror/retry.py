"""One retry policy for transient registry failures, built on tenacity.

Callers wrap a whole unit of work (a manifest request, or HEAD+POST+GET+PUT of a blob), so
a half-sent streaming body is never replayed on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from mirror.errors import RegistryError, TooManyRequestsError, is_retryable

__all__ = ["RetryPolicy"]

T = TypeVar("T")
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
    # False for upstreams: a spent pull quota (429 TOOMANYREQUESTS) is waited out by the
    # scheduler for the whole registry, not retried request by request.
    retry_quota: bool = True

    def _should_retry(self, exc: BaseException) -> bool:
        if not self.retry_quota and isinstance(exc, TooManyRequestsError):
            return exc.code != "TOOMANYREQUESTS" and is_retryable(exc)
        return is_retryable(exc)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait)(state)
        exc = state.outcome.exception() if state.outcome else None
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
        """Run `fn`, retrying transient failures; the last error propagates unchanged."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(fn)
