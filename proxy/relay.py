"""Deltas in, event payloads out: retries, fallbacks, timeouts and the commit point.

One policy: before the first event has gone to the client, a retryable upstream error is retried
(tenacity), then the next fallback model is tried. After it, any failure ends the stream with an
error terminate, so no text is ever sent twice. Every run emits exactly one terminate, last.

The commit point is the first event actually sent, whatever its kind; the timeouts count upstream
activity, whatever the client sees (issue 11). So a model that reasons for longer than `first_token`
is not declared dead, and when its reasoning was not asked for (or is dropped) and it fails before
its first text, nothing has reached the client: the retry is safe, as before any token.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from proxy.config import RetryConfig, TimeoutsConfig
from proxy.deadline import ReadDeadline
from proxy.deltas import Adapter, ChatRequest, Delta, Finish, Sleep, TextDelta, Usage
from proxy.errors import UpstreamError, UpstreamTimeout, UpstreamTruncated
from proxy.rich_events import Extras, Named
from proxy.sse import terminate_payload, text_payload

log = logging.getLogger("llm_sse_proxy.relay")


class Emit(Protocol):
    """Send one event: a default `message` event, or the named `event`."""

    def __call__(self, payload: dict[str, Any], event: str | None = None, /) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class Upstream:
    """A configured model: its name, its adapter, and whether its reasoning may reach clients."""

    name: str
    adapter: Adapter
    show_reasoning: bool = True


@dataclass(slots=True)
class Outcome:
    """How a stream ended, for the access log and metrics."""

    reason: str = "cancelled"
    model: str | None = None
    usage: Usage | None = None
    error_type: str | None = None
    error_status: int | None = None  # the upstream's HTTP status behind the error, if any
    attempts: int = 0
    fallbacks: int = 0
    ttft: float | None = None
    chunks: int = 0
    retries: list[str] = field(default_factory=list)  # the error types that were retried
    failures: list[str] = field(default_factory=list)  # the error types that ended a model's turn


class Relay:
    """Runs one chat request through a chain of upstreams and emits the browser's events."""

    def __init__(
        self,
        chain: Sequence[Upstream],
        request: ChatRequest,
        *,
        retry: RetryConfig,
        timeouts: TimeoutsConfig,
        sleep: Sleep = anyio.sleep,
        events: frozenset[str] = frozenset(),
    ) -> None:
        self.chain = chain
        self.request = request
        self.events = events  # the named events the client asked for
        self.retry = retry
        self.timeouts = timeouts
        self.sleep = sleep
        self.outcome = Outcome()
        self.committed = False
        self._started = 0.0
        self._total_deadline = math.inf
        self._no_first_token = f"no first token within {timeouts.first_token:g} s"
        self._silent = f"the upstream was silent for {timeouts.idle:g} s"

    async def run(self, emit: Emit) -> Outcome:
        """Emit text events, then exactly one terminate. Only cancellation escapes."""
        self._started = anyio.current_time()
        self._total_deadline = self._started + self.timeouts.total
        try:
            await self._through_chain(emit)
        except UpstreamError as exc:
            self.outcome.error_status = exc.status
            await self._fail(emit, exc.type, exc.message)
        except Exception as exc:  # the one boundary where a bug must not become a hung or bare-cut stream
            # The stack, without the exception's message: that may quote a secret from inside an SDK.
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("relay failed with %s:\n%s", type(exc).__name__, stack)
            await self._fail(emit, "internal_error", "the proxy failed; see its log")
        return self.outcome

    async def _through_chain(self, emit: Emit) -> None:
        last: UpstreamError | None = None
        for position, upstream in enumerate(self.chain):
            self.outcome.fallbacks = position
            try:
                await self._with_retries(upstream, emit)
                return
            except UpstreamError as exc:
                self.outcome.failures.append(exc.type)
                if self.committed:
                    raise
                log.warning("model %s failed: %s: %s", upstream.name, exc.type, exc.message)
                last = exc
        assert last is not None
        raise last

    async def _with_retries(self, upstream: Upstream, emit: Emit) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.outcome.attempts += 1
                await self._stream(upstream, emit)

    def _should_retry(self, exc: BaseException) -> bool:
        # Never True for CancelledError: tenacity would swallow the client's disconnect.
        if self.committed or not isinstance(exc, UpstreamError) or not exc.retryable:
            return False
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after > self.retry.retry_after_max:
            return False
        if anyio.current_time() >= self._total_deadline:
            return False
        return True

    def _before_sleep(self, state: RetryCallState) -> None:
        # Called only when a retry really follows (the stop rule has been checked).
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, UpstreamError)
        self.outcome.retries.append(exc.type)
        log.info("retrying in %.2f s after %s: %s", state.upcoming_sleep, exc.type, exc.message)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        backoff = wait_exponential_jitter(
            multiplier=self.retry.backoff_initial,
            max=self.retry.backoff_max,
            jitter=self.retry.backoff_initial,
        )
        return backoff(state)

    async def _stream(self, upstream: Upstream, emit: Emit) -> None:
        async with aclosing(upstream.adapter.stream(self.request)) as deltas:
            with anyio.CancelScope() as reading:
                deadline = ReadDeadline(reading, cap=self._total_deadline)
                try:
                    await self._relay(deltas, deadline, upstream, emit)
                finally:
                    deadline.close()
            if reading.cancelled_caught:
                if deadline.deadline >= self._total_deadline:
                    raise UpstreamTimeout(f"the stream exceeded its total time limit of {self.timeouts.total:g} s")
                raise UpstreamTimeout(deadline.expired or "the upstream timed out")

    async def _relay(self, deltas: AsyncIterator[Delta], deadline: ReadDeadline, upstream: Upstream, emit: Emit) -> None:
        deadline.arm(self.timeouts.first_token, self._no_first_token)
        delta = await _next(deltas)
        extras = Extras(self.events, show_reasoning=upstream.show_reasoning)
        idle, silent = self.timeouts.idle, self._silent
        while not isinstance(delta, Finish):
            deadline.pause()
            if isinstance(delta, TextDelta):
                if extras.open_call:
                    await self._send(extras.close_calls(), upstream, emit, deadline)
                if not self.committed:
                    self._commit(upstream, deadline)
                while True:  # a run of text: the hot path, no more work per chunk than before issue 11
                    await emit(text_payload(delta.text))
                    self.outcome.chunks += 1
                    deadline.arm(idle, silent)
                    delta = await _next(deltas)
                    if not isinstance(delta, TextDelta):
                        break
                    deadline.pause()
                continue
            await self._send(extras.named(delta), upstream, emit, deadline)
            deadline.arm(idle, silent)  # every upstream delta is activity, sent to the client or not
            delta = await _next(deltas)
        deadline.pause()
        if extras.open_call:
            await self._send(extras.close_calls(), upstream, emit, deadline)
        await self._finish(emit, delta, extras, upstream)

    async def _send(self, events: list[Named], upstream: Upstream, emit: Emit, deadline: ReadDeadline) -> None:
        for name, payload in events:
            if not self.committed:
                self._commit(upstream, deadline)
            await emit(payload, name)

    def _commit(self, upstream: Upstream, deadline: ReadDeadline) -> None:
        """The first event goes to the client: from now on nothing is retried."""
        self.committed = True
        self.outcome.model = upstream.name
        self.outcome.ttft = deadline.now() - self._started

    async def _finish(self, emit: Emit, finish: Finish, extras: Extras, upstream: Upstream) -> None:
        self.outcome.model = upstream.name
        self.outcome.reason = reason = extras.reason(finish.reason)
        self.outcome.usage = finish.usage
        await emit(terminate_payload(reason, usage=finish.usage, model=upstream.name,
                                     tool_calls=extras.tool_calls(), usage_details=extras.details))

    async def _fail(self, emit: Emit, error_type: str, message: str) -> None:
        self.outcome.reason = "error"
        self.outcome.error_type = error_type
        await emit(terminate_payload("error", error=(error_type, message), model=self.outcome.model))


async def _next(deltas: AsyncIterator[Delta]) -> Delta:
    try:
        return await deltas.__anext__()
    except StopAsyncIteration:
        raise UpstreamTruncated("the upstream ended without finishing the answer") from None
