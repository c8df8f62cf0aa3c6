"""The OpenTelemetry SDK, set up from `tracing:` (proxy/config/tracing.py): its own tracer provider (never
the process-wide one), the OTLP/HTTP exporter, and the bounded batch processor (proxy/telemetry/span_export.py).

Imported only when tracing is on (the `otel` extra). Every setting is passed explicitly: the config module
has already read the OTEL_* variables, so the SDK reads none of its own for these.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import Request

from llm_sse_proxy.proxy.config import ModelConfig
from llm_sse_proxy.proxy.config.tracing import TracingConfig
from llm_sse_proxy.proxy.deltas import ChatRequest
from llm_sse_proxy.proxy.telemetry.span_export import BoundedSpanProcessor, OnDrop
from llm_sse_proxy.proxy.telemetry.stream_trace import SCOPE, StreamTrace, Target, request_attributes

SHUTDOWN_WAIT = 2.0  # seconds the last export may take at shutdown; then its thread is left behind


class OtelTracing:
    def __init__(self, config: TracingConfig, models: Sequence[ModelConfig], *, on_drop: OnDrop) -> None:
        self.config = config
        self.capture_content = config.capture_content
        resource = Resource({"service.name": config.service_name, **config.resource_attributes})
        self.provider = TracerProvider(resource=resource, sampler=sampler(config), shutdown_on_exit=False)
        exporter = OTLPSpanExporter(
            endpoint=config.endpoint, timeout=config.export_timeout, compression=Compression.NoCompression,
            headers={name: value.get_secret_value() for name, value in config.headers.items()})
        self.provider.add_span_processor(BoundedSpanProcessor(
            exporter, on_drop=on_drop, max_queue_size=config.max_queue_size, schedule_delay=config.schedule_delay,
            max_export_batch_size=config.max_export_batch_size, export_timeout=config.export_timeout))
        self.tracer = self.provider.get_tracer(SCOPE)
        self.propagator = TraceContextTextMapPropagator()
        self.targets = {model.name: Target.of(model) for model in models}
        self.live: dict[str, StreamTrace] = {}  # resumable streams of this process, by stream id, while they run

    def stream(self, request: Request, *, model: str, chat: ChatRequest, client: str, request_id: str) -> StreamTrace:
        parent = self.propagator.extract(request.headers)  # the client's traceparent, if it sent one
        attributes = request_attributes(chat, self.targets[model], model=model, door=request.url.path, request_id=request_id,
                                        capture_content=self.capture_content)
        if self.config.record_client:
            attributes["llm_sse_proxy.client"] = client  # a key's id or an IP address, never a key
        return StreamTrace(self, self.tracer.start_span(f"chat {model}", context=parent,
                                                        kind=SpanKind.SERVER, attributes=attributes))

    def resumed(self, sid: str, after: int) -> None:
        trace = self.live.get(sid)
        if trace is not None:
            trace.reconnected(after)

    async def aclose(self) -> None:
        # shutdown() exports what is queued and joins the worker: in a daemon thread, with a bound, so a
        # collector that hangs delays the proxy's exit by SHUTDOWN_WAIT at most.
        done = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def shut() -> None:
            try:
                self.provider.shutdown()
            finally:
                try:
                    loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
                except RuntimeError:
                    pass  # the loop is gone: nobody waits any more

        threading.Thread(target=shut, name="otel-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), SHUTDOWN_WAIT)
        except TimeoutError:
            pass  # the spans still queued are lost, as the processor would drop them


def sampler(config: TracingConfig) -> Sampler:
    ratio = TraceIdRatioBased(config.sampler_arg)
    root = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF, "traceidratio": ratio}
    name = config.sampler.removeprefix("parentbased_")
    chosen = root[name]
    return ParentBased(chosen) if config.sampler.startswith("parentbased_") else chosen
