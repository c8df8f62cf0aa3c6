"""OpenTelemetry traces (issue 25): the seam the rest of the proxy sees, free of the SDK.

With `tracing.enabled: false` (the default) nothing here runs: the relay gets `NO_OBSERVER`, no span is
made, no header added, and the SDK is not even imported. With it on, `open_tracing` builds the SDK's
tracer (proxy/telemetry/otel.py; the `otel` extra) and each stream gets a `Traced`: one span for the
stream, a child per upstream attempt, events for what changed its course (proxy/telemetry/stream_trace.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from llm_sse_proxy.proxy.config import ConfigError, ModelConfig
from llm_sse_proxy.proxy.config.tracing import TracingConfig
from llm_sse_proxy.proxy.relay.observer import RelayObserver
from llm_sse_proxy.proxy.relay.outcome import Outcome

if TYPE_CHECKING:
    from starlette.requests import Request

    from llm_sse_proxy.proxy.deltas import ChatRequest
    from llm_sse_proxy.proxy.doors.response import SSEResponse
    from llm_sse_proxy.proxy.telemetry.metrics import Metrics

EXPORTER = "opentelemetry.exporter.otlp.proto.http"
INSTALL_HINT = "tracing.enabled needs the OpenTelemetry SDK: pip install 'llm-sse-proxy[otel]'"


@runtime_checkable
class Traced(RelayObserver, Protocol):
    """One stream's trace: the relay's observer, plus what the doors and the resumable streams tell it."""

    def follow(self, sid: str, reader: SSEResponse) -> None:
        """A resumable stream: its reader's disconnect, and later reconnects to `sid`, become events."""
        ...

    def ended(self, outcome: Outcome, answer: str | None) -> None:
        """The stream is over: its span gets the outcome (and the answer, with capture_content) and ends."""
        ...


class Tracing(Protocol):
    capture_content: bool

    def stream(self, request: Request, *, model: str, chat: ChatRequest, client: str, request_id: str) -> Traced:
        """Start the span of a stream asked of `model` (the client's `traceparent` continued)."""
        ...

    def resumed(self, sid: str, after: int) -> None:
        """A reader came back to stream `sid` from cursor `after`."""
        ...

    async def aclose(self) -> None:
        """Export what is left, within a bound; a collector that hangs cannot hold the shutdown."""
        ...


def check_installed(config: TracingConfig) -> None:
    """At start: a config that turns tracing on in a build without the SDK fails in one line."""
    if config.enabled and not all(_installed(name) for name in ("opentelemetry.sdk", EXPORTER)):
        raise ConfigError(INSTALL_HINT)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def open_tracing(config: TracingConfig, models: Sequence[ModelConfig], metrics: Metrics) -> Tracing | None:
    """The tracer for this app, or None when tracing is off."""
    if not config.enabled:
        return None
    check_installed(config)
    from llm_sse_proxy.proxy.telemetry.otel import OtelTracing  # the SDK only when asked for

    return OtelTracing(config, models, on_drop=metrics.spans_dropped)
