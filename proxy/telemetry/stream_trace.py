"""One stream's span, its attempts' child spans, and the events of what changed its course.

Attribute names follow OpenTelemetry's GenAI semantic conventions (`gen_ai.*`, `server.*`, `error.type`);
the proxy's own are under `llm_sse_proxy.`. The span is made when the stream is admitted and ended once,
with its outcome, when the stream is over: no work per chunk. Prompt and answer text are recorded only
with `tracing.capture_content: true` (`gen_ai.input.messages` / `gen_ai.output.messages`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from llm_sse_proxy.adapters.http_client import UPSTREAM_HEADERS
from llm_sse_proxy.proxy.config import ModelConfig
from llm_sse_proxy.proxy.deltas import ChatRequest
from llm_sse_proxy.proxy.doors.response import SSEResponse
from llm_sse_proxy.proxy.relay.outcome import Outcome

if TYPE_CHECKING:
    from llm_sse_proxy.proxy.telemetry.otel import OtelTracing

SCOPE = "llm_sse_proxy"
P = "llm_sse_proxy."  # the proxy's own attributes and events
MODEL_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
DISCONNECTS = frozenset({"cancelled", "send_timeout"})
_PARAMETERS = {"max_tokens": "gen_ai.request.max_tokens", "temperature": "gen_ai.request.temperature",
               "top_p": "gen_ai.request.top_p", "presence_penalty": "gen_ai.request.presence_penalty",
               "frequency_penalty": "gen_ai.request.frequency_penalty", "seed": "gen_ai.request.seed"}


@dataclass(frozen=True, slots=True)
class Target:
    """What a trace says of a configured model's upstream, worked out once at start (no credentials)."""

    provider: str  # the adapter's name: openai for any OpenAI-compatible server
    model: str  # the upstream's own model id, else the proxy's name for it
    address: str | None = None
    port: int | None = None

    @classmethod
    def of(cls, model: ModelConfig) -> Target:
        """The model's first deployment (a model without `deployments:` is one)."""
        first = model.upstreams()[0]
        upstream_model = getattr(first.options, "model", None) or model.name
        url = urlsplit(str(getattr(first.options, "base_url", None) or ""))
        if not url.hostname:
            return cls(first.adapter, str(upstream_model))
        return cls(first.adapter, str(upstream_model), url.hostname, url.port or (443 if url.scheme == "https" else 80))

    def attributes(self) -> dict[str, Any]:
        found: dict[str, Any] = {"gen_ai.provider.name": self.provider}
        if self.address is not None:
            found["server.address"], found["server.port"] = self.address, self.port
        return found


def request_attributes(chat: ChatRequest, target: Target, *, model: str, door: str, request_id: str,
                       capture_content: bool) -> dict[str, Any]:
    found = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, **target.attributes(),
             P + "door": door, P + "request_id": request_id}
    for field, name in _PARAMETERS.items():
        value = getattr(chat, field)
        if value is not None:
            found[name] = value
    if chat.stop:
        found["gen_ai.request.stop_sequences"] = list(chat.stop)
    if capture_content:
        found["gen_ai.input.messages"] = json.dumps(
            [{"role": m.role, "parts": [{"type": "text", "content": m.text}]} for m in chat.messages])
    return found


class StreamTrace:
    """A `Traced` (proxy/telemetry/tracing.py) on the SDK."""

    def __init__(self, tracing: OtelTracing, span: Span) -> None:
        self.tracing = tracing
        self.span = span
        self.context = set_span_in_context(span)
        self.hedged = False
        self.sid: str | None = None

    # The relay's observer (proxy/relay/observer.py)
    def attempt(self, model: str) -> _Attempt:
        return _Attempt(self, model)

    def retrying(self, error_type: str, wait: float) -> None:
        self.span.add_event(P + "retry", {"error.type": error_type, P + "retry.wait_seconds": wait})

    def falling_back(self, model: str) -> None:
        self.span.add_event(P + "fallback", {P + "model": model})

    def recovering(self, error_type: str) -> None:
        self.span.add_event(P + "recovery.start", {"error.type": error_type})

    def recovered(self, kind: str, model: str) -> None:
        self.span.add_event(P + "recovery.done", {P + "recovery.kind": kind, P + "model": model})

    def hedge_started(self, model: str) -> None:
        self.hedged = True
        self.span.add_event(P + "hedge.start", {P + "model": model})

    def hedge_won(self, model: str) -> None:
        self.span.add_event(P + "hedge.winner", {P + "model": model})

    # The doors and the resumable streams
    def follow(self, sid: str, reader: SSEResponse) -> None:
        self.sid = sid
        self.span.set_attribute(P + "stream_id", sid)
        self.tracing.live[sid] = self
        self.watch_reader(reader)

    def watch_reader(self, reader: SSEResponse) -> None:
        """The reader's end, if the client left before the stream did, is an event (generation goes on)."""
        def done(ending: str | None) -> None:
            if ending in DISCONNECTS and self.span.is_recording():
                self.span.add_event(P + "client.disconnect", {P + "reason": ending, P + "resumable": True})

        reader.on_done = done

    def reconnected(self, after: int) -> None:
        self.span.add_event(P + "resume.reconnect", {P + "resume.cursor": after})

    def ended(self, outcome: Outcome, answer: str | None) -> None:
        if self.sid is not None:
            self.tracing.live.pop(self.sid, None)
        if outcome.reason in DISCONNECTS and self.sid is None:
            self.span.add_event(P + "client.disconnect", {P + "reason": outcome.reason})
        self.span.set_attributes(self._outcome_attributes(outcome))
        if answer is not None:
            self.span.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}],
                  "finish_reason": outcome.reason}]))
        if outcome.reason == "error":
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()

    def _outcome_attributes(self, outcome: Outcome) -> dict[str, Any]:
        found: dict[str, Any] = {
            P + "terminate.reason": outcome.reason, P + "attempts": outcome.attempts,
            P + "retries": len(outcome.retries), P + "fallbacks": outcome.fallbacks, P + "chunks": outcome.chunks,
            P + "recovered": outcome.recovered is not None, P + "hedged": self.hedged}
        if outcome.recovered is not None:
            found[P + "recovery.kind"] = outcome.recovered
        deployment = getattr(outcome, "deployment", None)  # issue 22's deployments, once they exist
        if deployment is not None:
            found[P + "deployment"] = str(deployment)
        target = self.tracing.targets.get(outcome.model or "")
        if target is not None:
            found.update({"gen_ai.response.model": target.model, P + "answered_by": outcome.model,
                          **target.attributes()})
        if outcome.ttft is not None:
            found[P + "ttft_seconds"] = found["gen_ai.response.time_to_first_chunk"] = outcome.ttft
        found.update(_usage(outcome))
        if outcome.reason in MODEL_REASONS:
            found["gen_ai.response.finish_reasons"] = [outcome.reason]
        if outcome.reason == "error":
            found["error.type"] = outcome.error_type or "_OTHER"
        return found


def _usage(outcome: Outcome) -> Mapping[str, int]:
    usage = outcome.usage
    if usage is None:
        return {}
    found = {"gen_ai.usage.input_tokens": usage.prompt_tokens, "gen_ai.usage.output_tokens": usage.completion_tokens}
    if usage.reasoning_tokens is not None:
        found["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if usage.cached_tokens is not None:
        found["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    return found


class _Attempt:
    """One upstream attempt's client span; while it runs, its trace context goes out with the request."""

    __slots__ = ("trace", "model", "span", "token")

    def __init__(self, trace: StreamTrace, model: str) -> None:
        self.trace, self.model = trace, model
        self.span: Span | None = None
        self.token: Token[Mapping[str, str] | None] | None = None

    def __enter__(self) -> _Attempt:
        tracing = self.trace.tracing
        target = tracing.targets[self.model]
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": target.model, P + "model": self.model,
                      **target.attributes()}
        self.span = span = tracing.tracer.start_span(f"chat {target.model}", context=self.trace.context,
                                                     kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        tracing.propagator.inject(carrier, context=set_span_in_context(span))
        self.token = UPSTREAM_HEADERS.set(carrier)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        assert self.span is not None and self.token is not None
        UPSTREAM_HEADERS.reset(self.token)
        if error is not None:
            self.span.set_attribute("error.type", _error_type(error))
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


def _error_type(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"  # the client left, the server stopped, or a deadline cut the read
    error_type = getattr(error, "type", None)  # the proxy's UpstreamError types (proxy/errors.py)
    return error_type if isinstance(error_type, str) else type(error).__qualname__
