"""A real OTLP/HTTP trace receiver on loopback for the tracing tests: `POST /v1/traces` bodies decoded with
the official protobuf types (`opentelemetry-proto`), as a collector would. Not the SDK's in-memory exporter:
what is checked is what went over the wire. `hang=True` makes it accept connections and never answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

HANG_LIMIT = 30.0  # seconds a hanging receiver holds a request at most, so a test never waits forever

KINDS = {Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client", Span.SPAN_KIND_INTERNAL: "internal"}


@dataclass
class Event:
    name: str
    attributes: dict[str, Any]
    time: int


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[Event]
    status: str  # "unset", "ok", "error"
    start: int
    end: int
    resource: dict[str, Any] = field(default_factory=dict)

    def events_named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@dataclass
class OtlpReceiver:
    url: str
    spans: list[ReceivedSpan]
    posts: list[str]  # the path of each request

    def wait_for(self, count: int, timeout: float = 20.0) -> list[ReceivedSpan]:
        """The spans once at least `count` have arrived (bounded)."""
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.spans) >= count, f"{len(self.spans)} spans of {count} arrived: {self.spans}"
        return list(self.spans)


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    span.name, KINDS.get(span.kind, str(span.kind)), span.trace_id.hex(), span.span_id.hex(),
                    span.parent_span_id.hex(), attributes(span.attributes),
                    [Event(e.name, attributes(e.attributes), e.time_unix_nano) for e in span.events],
                    {0: "unset", 1: "ok", 2: "error"}[span.status.code], span.start_time_unix_nano,
                    span.end_time_unix_nano, resource))
    return spans


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@contextmanager
def otlp_receiver(*, hang: bool = False) -> Iterator[OtlpReceiver]:
    spans: list[ReceivedSpan] = []
    posts: list[str] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            posts.append(self.path)
            if hang:
                release.wait(HANG_LIMIT)
                return
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            spans.extend(decode(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield OtlpReceiver(f"http://127.0.0.1:{server.server_address[1]}/v1/traces", spans, posts)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
