"""Print the trace of one recovered stream as a tree, as docs/operations.md shows it (issue 25).

A real run on loopback: the mock upstream cuts the answer after 3 chunks, the proxy (tracing on, exporting
over OTLP/HTTP to the tests' receiver) recovers it with a continuation, and the client sends a traceparent.
    .venv/bin/python -m scripts.trace_tree
"""

from __future__ import annotations

import asyncio

from tests.conftest import RESUME_OFF, chat_body, proxy, read_stream
from tests.otlp_receiver import ReceivedSpan, otlp_receiver
from tests.upstream_fixtures import mock_upstream, upstream_config

SHOWN = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
         "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons",
         "server.address", "error.type", "llm_sse_proxy.door", "llm_sse_proxy.ttft_seconds",
         "llm_sse_proxy.attempts", "llm_sse_proxy.recovered", "llm_sse_proxy.recovery.kind",
         "llm_sse_proxy.terminate.reason")


async def run() -> list[ReceivedSpan]:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            faults = {"x-mock-drop-after": "3", "x-mock-fault-attempts": "1", "x-mock-delay-ms": "20",
                      "x-mock-continue-with": "trailing_assistant"}  # the mock's options, as headers
            model = up.model("gpt", "gpt-4o-mini", recovery="continue", continue_with="trailing_assistant",
                             default_headers=faults, api_key="${KEY}")
            tracing = {"enabled": True, "endpoint": receiver.url, "schedule_delay": 0.05}
            config = upstream_config([model], tracing=tracing, environ={"KEY": "sk-demo"}, **RESUME_OFF)
            async with proxy(config) as client:
                await read_stream(client, "POST", "/chat", json=chat_body("What is SSE?"),
                                  headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
        return receiver.wait_for(3)


def tree(spans: list[ReceivedSpan]) -> str:
    origin = min(s.start for s in spans)
    ms = lambda ns: f"{(ns - origin) / 1e6:7.1f} ms"  # noqa: E731
    lines = []
    for span in sorted(spans, key=lambda s: (s.kind != "server", s.start)):
        indent = "" if span.kind == "server" else "  └─ "
        took = f"{(span.end - span.start) / 1e6:.1f} ms"
        lines.append(f"{ms(span.start)}  {indent}{span.name}  [{span.kind}, {took}, status {span.status}]")
        pad = " " * (13 + len(indent))
        for key in SHOWN:
            if key in span.attributes:
                value = span.attributes[key]
                lines.append(f"{pad}{key} = {round(value, 4) if isinstance(value, float) else value}")
        for event in span.events:
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in event.attributes.items()}
            lines.append(f"{ms(event.time)}  {' ' * len(indent)}• event {event.name} {shown}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(tree(asyncio.run(run())))
