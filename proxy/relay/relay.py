"""Deltas in, event payloads out: retries, fallbacks, timeouts and the commit point.

One policy: before the first event has gone to the client, a retryable upstream error is retried
(tenacity), then the next fallback model is tried. After it, any failure ends the stream with an
error terminate, so no text is ever sent twice. Every run emits exactly one terminate, last.

The commit point is the first event actually sent, whatever its kind; the timeouts count upstream
activity, whatever the client sees (issue 11). So a model that reasons for longer than `first_token`
is not declared dead, and when its reasoning was not asked for (or is dropped) and it fails before
its first text, nothing has reached the client: the retry is safe, as before any token.

After the commit point, a model configured with `recovery` may have its cut answer recovered on the
next attempt of the same order (proxy/relay/recovery.py: continue the text, or restart it with a reset).
Each attempt goes to a deployment of its model, from the request's route (proxy/relay/attempts.py, issue 22);
the retry policy itself is proxy/relay/retries.py.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from llm_sse_proxy.proxy.config import FaultsConfig, RetryConfig, TimeoutsConfig
from llm_sse_proxy.proxy.relay.deadline import ReadDeadline
from llm_sse_proxy.proxy.deltas import (
    Adapter,
    ChatRequest,
    Delta,
    Finish,
    MalformedChunk,
    Sleep,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from llm_sse_proxy.proxy.errors import (
    ContentPolicyRejected,
    NoFirstToken,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRejected,
    UpstreamTimeout,
)
from llm_sse_proxy.proxy.relay.attempts import Attempts
from llm_sse_proxy.proxy.relay.observer import NO_OBSERVER, RelayObserver
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.relay.recovery import CannotRecoverHere, Plan, Recovery, add_usage
from llm_sse_proxy.proxy.relay.retries import RetryPolicy
from llm_sse_proxy.proxy.relay.rich_events import Extras, Named
from llm_sse_proxy.proxy.relay.reading import next_delta, read_seam
from llm_sse_proxy.proxy.relay.splice import splice
from llm_sse_proxy.proxy.relay.sse import terminate_payload, text_payload
from llm_sse_proxy.proxy.routing.route import ModelUnavailable, RequestRoute

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
    recovery: str = "off"  # off | continue | restart: when this model's stream dies mid-answer
    continue_with: str = "none"  # how this model continues an assistant message, as a recovery target


class Relay(RetryPolicy):
    """Runs one chat request through a chain of upstreams and emits the browser's events."""

    def __init__(
        self,
        chain: Sequence[Upstream] | RequestRoute,
        request: ChatRequest,
        *,
        retry: RetryConfig,
        timeouts: TimeoutsConfig,
        sleep: Sleep = anyio.sleep,
        events: frozenset[str] = frozenset(),
        faults: FaultsConfig = FaultsConfig(),
        observer: RelayObserver = NO_OBSERVER,
        record_text: bool = False,
    ) -> None:
        self.route = chain if isinstance(chain, RequestRoute) else RequestRoute.of_upstreams(chain)
        self.chain = [model.deployments[0].upstream for model in self.route.chain]
        self.request = request
        self.events = events  # the named events the client asked for
        self.retry = retry
        self.timeouts = timeouts
        self.sleep = sleep
        self.faults = faults
        self.recovery = Recovery(request, may_reset="reset" in events, budget=faults.max_recoveries)
        self.observer = observer  # told of each attempt, retry, fallback and recovery (proxy/relay/observer.py)
        self.records_text = record_text  # a trace records the answer (recovery.text()), besides a recovery
        self._recording = record_text or any(upstream.recovery != "off" for upstream in self.chain)
        self._spent: Usage | None = None  # what failed attempts reported using
        self._plan: Plan | None = None  # how the attempt under way was asked, when it recovers
        self._malformed_run = 0
        self._refused = False  # the attempt that just failed refused a continuation
        self.outcome = Outcome()
        self.committed = False
        self._started = 0.0
        self._total_deadline = math.inf
        self._no_first_token = f"no first token within {timeouts.first_token:g} s"
        self._silent = f"the upstream was silent for {timeouts.idle:g} s"
        self.attempts = Attempts(self.route, timeouts, faults, self.outcome, self.observer)

    async def run(self, emit: Emit) -> Outcome:
        """Emit text events, then exactly one terminate. Only cancellation escapes."""
        self._started = anyio.current_time()
        self._total_deadline = self._started + self.timeouts.total
        try:
            await self._through_chain(emit)
        except UpstreamError as exc:
            self.outcome.error_status = exc.status
            await self._fail(emit, exc.type, exc.message, getattr(exc, "retry_after", None))
        except Exception as exc:  # the one boundary where a bug must not become a hung or bare-cut stream
            # The stack, without the exception's message: that may quote a secret from inside an SDK.
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("relay failed with %s:\n%s", type(exc).__name__, stack)
            await self._fail(emit, "internal_error", "the proxy failed; see its log")
        finally:
            self.route.close()  # every deployment slot still held is given back, cancelled or not
        return self.outcome

    async def _through_chain(self, emit: Emit) -> None:
        last: UpstreamError | None = None
        for position, upstream in enumerate(self.chain):
            self.outcome.fallbacks = position
            if position:
                self.observer.falling_back(upstream.name)
            try:
                await self._with_retries(position, emit)
                return
            except CannotRecoverHere:
                continue
            except UpstreamError as exc:
                if isinstance(exc, ModelUnavailable) and self.attempts.last_failure is not None:
                    exc = self.attempts.last_failure  # what was said before the breakers closed to this request
                self.outcome.failures.append(exc.type)
                if self.committed and not self.recovery.active:
                    raise
                if self._final(exc):
                    raise self.recovery.original or exc
                log.warning("model %s failed: %s: %s", upstream.name, exc.type, exc.message)
                last = exc
        if self.recovery.original is not None:
            raise self.recovery.original  # never what a recovery attempt said (a refused prefill, say)
        assert last is not None
        raise last

    def _final(self, exc: UpstreamError) -> bool:
        """A content-policy rejection is the answer: no fallback, unless configured (issue 12)."""
        return isinstance(exc, ContentPolicyRejected) and self.faults.content_policy == "final"

    async def _attempt(self, position: int, emit: Emit) -> None:
        upstream = await self.attempts.begin(position)
        sent_before = self.outcome.text_chars
        try:
            with self.observer.attempt(upstream.name):
                await self._stream(upstream, emit)
        except UpstreamError as exc:
            if exc.usage is None and self.outcome.text_chars > sent_before:
                self.outcome.unmetered.append(self.outcome.text_chars - sent_before)  # billed by estimate
            self.attempts.failed(exc)
            self._failed(exc, self.attempts.upstream)
            raise
        finally:
            self.attempts.end()

    def _failed(self, exc: UpstreamError, upstream: Upstream) -> None:
        self.outcome.spent = self._spent = add_usage(self._spent, exc.usage)
        self._refused = False
        if not self.committed or isinstance(exc, CannotRecoverHere):
            return
        if self._plan is not None and self._plan.kind == "continue" and isinstance(exc, UpstreamRejected):
            self._refused = True  # the original request was accepted: what it refuses is the prefill
            self.recovery.refused(upstream)
        time_left = anyio.current_time() < self._total_deadline
        recovering = self.recovery.active
        if self.recovery.begin(exc, upstream, time_left=time_left) and not recovering:
            self.observer.recovering(exc.type)

    async def _stream(self, upstream: Upstream, emit: Emit) -> None:
        self._plan = plan = self.recovery.plan(upstream) if self.recovery.active else None
        async with aclosing(upstream.adapter.stream(plan.request if plan else self.request)) as deltas:
            with anyio.CancelScope() as reading:
                deadline = ReadDeadline(reading, cap=self._total_deadline)
                try:
                    await self._relay(deltas, deadline, upstream, emit)
                finally:
                    deadline.close()
                    await self.attempts.close_hedges()
            if reading.cancelled_caught:
                if deadline.deadline >= self._total_deadline:
                    raise UpstreamTimeout(f"the stream exceeded its total time limit of {self.timeouts.total:g} s")
                if deadline.expired == self._no_first_token:
                    raise NoFirstToken(deadline.expired)
                raise UpstreamTimeout(deadline.expired or "the upstream timed out")

    async def _relay(self, deltas: AsyncIterator[Delta], deadline: ReadDeadline, upstream: Upstream, emit: Emit) -> None:
        deadline.arm(self.timeouts.first_token, self._no_first_token)
        hedge = not self.committed and self._plan is None  # only a first try is hedged, never a recovery
        delta, deltas, upstream = await self.attempts.first_delta(deltas, self.request, hedge)
        if self._plan is not None:
            delta = await self._recover(self._plan, delta, deltas, deadline, upstream, emit)
        extras = Extras(self.events, show_reasoning=upstream.show_reasoning)
        idle, silent = self.timeouts.idle, self._silent
        recording, sent = self._recording, self.recovery.sent
        while not isinstance(delta, Finish):
            deadline.pause()
            if isinstance(delta, TextDelta):
                if extras.open_call:
                    await self._send(extras.close_calls(), upstream, emit, deadline)
                if not self.committed:
                    self._commit(upstream, deadline)
                self._malformed_run = 0
                while True:  # a run of text: the hot path, no more work per chunk than before issue 11
                    await emit(text_payload(delta.text))
                    self.outcome.chunks += 1
                    self.outcome.text_chars += len(delta.text)
                    if recording:
                        sent.append(delta.text)
                    deadline.arm(idle, silent)
                    delta = await next_delta(deltas)
                    if not isinstance(delta, TextDelta):
                        break
                    deadline.pause()
                continue
            if isinstance(delta, MalformedChunk):
                self._skip(delta)
            else:
                self._malformed_run = 0
                if isinstance(delta, ToolCallDelta):
                    self.recovery.only_text = False  # a call under way cannot be continued as text
                await self._send(extras.named(delta), upstream, emit, deadline)
            deadline.arm(idle, silent)  # every upstream delta is activity, sent to the client or not
            delta = await next_delta(deltas)
        deadline.pause()
        if extras.open_call:
            await self._send(extras.close_calls(), upstream, emit, deadline)
        await self._finish(emit, delta, extras, upstream)

    async def _send(self, events: list[Named], upstream: Upstream, emit: Emit, deadline: ReadDeadline) -> None:
        for name, payload in events:
            if not self.committed:
                self._commit(upstream, deadline)
            self.recovery.only_text = False
            await emit(payload, name)

    def _skip(self, delta: MalformedChunk) -> None:
        """One chunk the adapter could not read: skipped and counted, unless they keep coming."""
        self.outcome.malformed += 1
        self._malformed_run += 1
        if self.faults.on_malformed_chunk == "error" or self._malformed_run >= self.faults.max_malformed_in_a_row:
            raise UpstreamMalformed(delta.message)
        log.warning("skipped a malformed upstream chunk: %s", delta.message)

    async def _recover(self, plan: Plan, delta: Delta, deltas: AsyncIterator[Delta], deadline: ReadDeadline,
                       upstream: Upstream, emit: Emit) -> Delta:
        """The first event of a recovery attempt: a reset, or the continuation spliced onto the text sent.
        Returns the next delta to relay."""
        deadline.pause()
        if plan.kind == "restart":
            await self._reset(upstream, emit)
            return delta
        text, delta = await read_seam(delta, deltas, deadline, idle=self.timeouts.idle, silent=self._silent,
                                      skip=self._skip)
        seam = splice(self.recovery.text(), text)
        if seam.restarted:
            if not self.recovery.may_reset:
                raise CannotRecoverHere(f"{upstream.name} started its answer over")
            await self._reset(upstream, emit)
        else:
            self.recovery.done("continue", upstream.name)
            self.observer.recovered("continue", upstream.name)
            text = seam.emit
        if text:
            await emit(text_payload(text))
            self.outcome.chunks += 1
            self.outcome.text_chars += len(text)
            self.recovery.sent.append(text)
        if delta is None:  # the seam is sent: only now may the next read fail without losing it
            deadline.arm(self.timeouts.idle, self._silent)
            delta = await next_delta(deltas)
        return delta

    async def _reset(self, upstream: Upstream, emit: Emit) -> None:
        original = self.recovery.original
        assert original is not None
        self.recovery.done("restart", upstream.name)
        self.observer.recovered("restart", upstream.name)
        self.outcome.model = upstream.name
        await emit({"action": "reset", "reason": original.type, "model": upstream.name}, "reset")

    def _commit(self, upstream: Upstream, deadline: ReadDeadline) -> None:
        """The first event goes to the client: from now on nothing is retried."""
        self.committed = True
        self.outcome.model = upstream.name
        self.outcome.deployment = self.attempts.answered()[0]
        self.outcome.ttft = deadline.now() - self._started

    async def _finish(self, emit: Emit, finish: Finish, extras: Extras, upstream: Upstream) -> None:
        self.outcome.model = upstream.name
        self.outcome.deployment, listed = self.attempts.answered()
        self.outcome.reason = reason = extras.reason(finish.reason)
        self.outcome.usage = usage = add_usage(self._spent, self.attempts.billed(finish.usage))  # all attempts billed
        recovered = self._recovered()
        await emit(terminate_payload(reason, usage=usage, model=upstream.name, tool_calls=extras.tool_calls(),
                                     usage_details=extras.details, recovered=recovered,
                                     deployment=listed if self.events else None))

    async def _fail(self, emit: Emit, error_type: str, message: str, retry_after: float | None = None) -> None:
        self.outcome.reason = "error"
        self.outcome.error_type = error_type
        await emit(terminate_payload("error", error=(error_type, message), model=self.outcome.model,
                                     recovered=self._recovered(), retry_after=retry_after))

    def _recovered(self) -> dict[str, Any] | None:
        recovered = self.recovery.recovered
        self.outcome.recovered = recovered["kind"] if recovered else None
        return recovered

