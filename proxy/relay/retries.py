"""The relay's one retry policy (tenacity), mixed into `Relay` (proxy/relay/relay.py says when it applies).

Before the first event a retryable error is retried, at once on another deployment of the model when one
is left (issue 22), else after the backoff or the upstream's Retry-After; after the first event only a
recovery is (proxy/relay/recovery.py). `attempts` decides where the next try goes (proxy/relay/attempts.py).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from llm_sse_proxy.proxy.errors import UpstreamError
from llm_sse_proxy.proxy.relay.recovery import CannotRecoverHere
from llm_sse_proxy.proxy.routing.route import ModelUnavailable

if TYPE_CHECKING:
    from llm_sse_proxy.proxy.config import RetryConfig
    from llm_sse_proxy.proxy.deltas import Sleep
    from llm_sse_proxy.proxy.relay.attempts import Attempts
    from llm_sse_proxy.proxy.relay.observer import RelayObserver
    from llm_sse_proxy.proxy.relay.outcome import Outcome
    from llm_sse_proxy.proxy.relay.recovery import Recovery

log = logging.getLogger("llm_sse_proxy.relay")


class RetryPolicy:
    """What is retried and how long the wait is; `Relay` has the state it reads."""

    retry: RetryConfig
    sleep: Sleep
    committed: bool
    recovery: Recovery
    attempts: Attempts
    outcome: Outcome
    observer: RelayObserver
    _refused: bool
    _total_deadline: float = math.inf

    async def _attempt(self, position: int, emit: Any) -> None:
        raise NotImplementedError

    async def _with_retries(self, position: int, emit: Any) -> None:
        # Most requests succeed at once: tenacity's machinery is built only once an attempt has failed.
        first: UpstreamError | None
        try:
            return await self._attempt(position, emit)
        except UpstreamError as exc:
            first = exc
        retrying = AsyncRetrying(stop=stop_after_attempt(self.retry.attempts), wait=self._wait, sleep=self.sleep,
                                 retry=retry_if_exception(self._should_retry), before_sleep=self._before_sleep,
                                 reraise=True)
        async for attempt in retrying:
            with attempt:
                if first is not None:  # attempt 1, already run: tenacity judges its error, numbering unchanged
                    failed, first = first, None
                    raise failed
                await self._attempt(position, emit)

    def _should_retry(self, exc: BaseException) -> bool:
        # Never True for CancelledError: tenacity would swallow the client's disconnect.
        if not isinstance(exc, UpstreamError) or isinstance(exc, (CannotRecoverHere, ModelUnavailable)):
            return False
        if self.committed:
            refused = self._refused and self.recovery.may_reset  # restart it instead
            if not self.recovery.active or not (exc.retryable or refused):
                return False
        elif not exc.retryable:
            return False
        if anyio.current_time() >= self._total_deadline:
            return False
        if self.attempts.elsewhere():
            return True  # another deployment of the model: asked at once (see _wait)
        if self.attempts.next_model(exc):
            return False
        retry_after = getattr(exc, "retry_after", None)
        return retry_after is None or retry_after <= self.retry.retry_after_max

    def _before_sleep(self, state: RetryCallState) -> None:
        # Called only when a retry really follows (the stop rule has been checked).
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, UpstreamError)
        self.outcome.retries.append(exc.type)
        self.observer.retrying(exc.type, state.upcoming_sleep)
        log.info("retrying in %.2f s after %s: %s", state.upcoming_sleep, exc.type, exc.message)

    def _wait(self, state: RetryCallState) -> float:
        if self.attempts.elsewhere():
            return 0.0  # the backoff and a Retry-After are the failed deployment's, not another's
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        initial = self.retry.backoff_initial
        return wait_exponential_jitter(multiplier=initial, max=self.retry.backoff_max, jitter=initial)(state)
