"""The CPU one stream's trace costs in-process (issue 25): its two spans made, ended and exported.

    .venv/bin/python bench/tracing_sdk_cpu.py --streams 3000

The stream's span and one attempt's, with the attributes the proxy sets, through the proxy's own tracing
(proxy/telemetry/otel.py), exported over OTLP/HTTP to the tests' loopback receiver. Two figures per stream:
this thread's CPU (what the event loop pays: spans made and ended), and the process's CPU after a flush,
which adds the SDK's export thread and also the receiver's decoding (it runs in this process): an upper
bound. No HTTP request is served: this is the tracing alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.requests import Request  # noqa: E402

from llm_sse_proxy.proxy.deltas import ChatRequest, Message, Usage  # noqa: E402
from llm_sse_proxy.proxy.relay.outcome import Outcome  # noqa: E402
from llm_sse_proxy.proxy.telemetry.otel import OtelTracing  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tests.otlp_receiver import otlp_receiver  # noqa: E402

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=3000)
    args = parser.parse_args()
    with otlp_receiver() as receiver:
        model = {"name": "gpt", "adapter": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "${KEY}",
                 "model": "gpt-4o-mini"}
        tracing = {"enabled": True, "endpoint": receiver.url, "max_queue_size": 4 * args.streams}
        config = make_config([model], environ={"KEY": "bench"}, tracing=tracing)
        traces = OtelTracing(config.tracing, config.models, on_drop=lambda reason, count: None)
        request = Request({"type": "http", "method": "POST", "path": "/chat", "query_string": b"", "root_path": "",
                           "scheme": "http", "server": ("127.0.0.1", 80), "headers": [(b"traceparent", TRACEPARENT)]})
        chat = ChatRequest(messages=(Message("user", "hi"),), temperature=0.5, max_tokens=100)
        outcome = Outcome(reason="stop", model="gpt", usage=Usage(12, 40), attempts=1, ttft=0.2, chunks=40)
        started, started_thread = time.process_time(), time.thread_time()
        for _ in range(args.streams):
            trace = traces.stream(request, model="gpt", chat=chat, client="ip:127.0.0.1", request_id="r")
            with trace.attempt("gpt"):
                pass
            trace.ended(outcome, None)
        loop_cost = time.thread_time() - started_thread
        traces.provider.force_flush()
        spent = time.process_time() - started
        receiver.wait_for(2 * args.streams)
        traces.provider.shutdown()
    print(f"per stream (2 spans), {args.streams} streams: {loop_cost / args.streams * 1e6:.0f} us on the event loop's "
          f"thread; {spent / args.streams * 1e6:.0f} us of process CPU with the export and the receiver's decoding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
