"""OpenTelemetry traces (issue 25), checked on the wire: a real OTLP/HTTP receiver on loopback decodes what
the proxy exports (tests/otlp_receiver.py), the mock upstream records the `traceparent` it was sent, and
the proxy runs under uvicorn. Spans are flushed when the proxy's lifespan ends, so each test reads them
after its proxy has stopped."""

from __future__ import annotations

import json
import re
import statistics
import time
from typing import Any

import anyio
import httpx2
import pytest

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from tests.conftest import RESUME_OFF, chat_body, payloads, proxy, read_stream
from tests.docs_blocks import block
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.upstream_fixtures import API_KEY, mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def tracing(receiver: OtlpReceiver, **more: Any) -> dict[str, Any]:
    return {"enabled": True, "endpoint": receiver.url, "schedule_delay": 0.05, **more}


def by_kind(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    """The stream's span and its attempts' spans, oldest first."""
    [stream] = [s for s in spans if s.kind == "server"]
    attempts = sorted((s for s in spans if s.kind == "client"), key=lambda s: s.start)
    assert all(a.parent_span_id == stream.span_id and a.trace_id == stream.trace_id for a in attempts)
    return stream, attempts


async def test_a_healthy_stream_is_one_span_with_genai_attributes_and_the_trace_goes_upstream() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("gpt", "gpt-4o-mini")], tracing=tracing(receiver), **RESUME_OFF)
            async with proxy(config) as client:
                body = chat_body("hello there", temperature=0.5, max_tokens=50)
                _, parsed = await read_stream(client, "POST", "/chat", json=body, headers={"traceparent": TRACEPARENT})
            sent = up.recorder.attempts[0].headers
        stream, [attempt] = by_kind(receiver.wait_for(2))
    # The client's trace is continued, and the attempt's context is what the upstream got.
    assert (stream.trace_id, stream.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert sent["traceparent"] == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    a = stream.attributes
    terminate = payloads(parsed)[-1]
    assert stream.name == "chat gpt" and stream.status == "unset"
    assert {k: a[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
                              "gen_ai.response.model", "gen_ai.request.temperature", "gen_ai.request.max_tokens",
                              "gen_ai.response.finish_reasons", "server.address", "llm_sse_proxy.door",
                              "llm_sse_proxy.terminate.reason", "llm_sse_proxy.attempts", "llm_sse_proxy.recovered",
                              "llm_sse_proxy.hedged")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt",
        "gen_ai.response.model": "gpt-4o-mini", "gen_ai.request.temperature": 0.5, "gen_ai.request.max_tokens": 50,
        "gen_ai.response.finish_reasons": ["stop"], "server.address": "127.0.0.1", "llm_sse_proxy.door": "/chat",
        "llm_sse_proxy.terminate.reason": "stop", "llm_sse_proxy.attempts": 1, "llm_sse_proxy.recovered": False,
        "llm_sse_proxy.hedged": False}
    assert a["server.port"] == int(up.url.rsplit(":", 1)[1])
    assert a["gen_ai.usage.input_tokens"] == terminate["usage"]["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == terminate["usage"]["completion_tokens"]
    assert a["llm_sse_proxy.ttft_seconds"] == a["gen_ai.response.time_to_first_chunk"] > 0
    assert "error.type" not in a and "llm_sse_proxy.client" not in a  # no identity unless configured
    assert not any(name.startswith(("gen_ai.input", "gen_ai.output")) for name in a)  # no text by default
    assert (attempt.name, attempt.attributes["gen_ai.request.model"], attempt.status) == ("chat gpt-4o-mini",
                                                                                          "gpt-4o-mini", "unset")
    assert stream.resource["service.name"] == "llm-sse-proxy"
    assert API_KEY not in repr(receiver.spans)


async def test_a_retried_and_fallen_back_stream_shows_each_attempt_and_event() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            models = [{**up.model("gpt", "gpt+fail=9:503+key=trace-a"), "fallbacks": ["backup"]},
                      up.model("backup", "backup+fail=1:503+key=trace-b")]
            retry = {"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02}
            config = upstream_config(models, tracing=tracing(receiver), retry=retry, **RESUME_OFF)
            async with proxy(config) as client:
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        stream, attempts = by_kind(receiver.wait_for(5))
    assert payloads(parsed)[-1]["reason"] == "stop"
    # gpt twice (503, retried, 503), then backup twice (503, retried, then the answer).
    assert [(s.attributes["llm_sse_proxy.model"], s.status) for s in attempts] == [
        ("gpt", "error"), ("gpt", "error"), ("backup", "error"), ("backup", "unset")]
    assert [s.attributes.get("error.type") for s in attempts] == ["upstream_unavailable"] * 3 + [None]
    names = [e.name for e in stream.events]
    assert names == ["llm_sse_proxy.retry", "llm_sse_proxy.fallback", "llm_sse_proxy.retry"]
    assert stream.events[1].attributes == {"llm_sse_proxy.model": "backup"}
    assert stream.events[0].attributes["error.type"] == "upstream_unavailable"
    assert stream.attributes["llm_sse_proxy.answered_by"] == "backup"
    assert (stream.attributes["llm_sse_proxy.retries"], stream.attributes["llm_sse_proxy.fallbacks"]) == (2, 1)


async def test_a_failed_stream_has_error_type_and_error_status() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("gpt", "gpt+fail=9:400+key=trace-c")], tracing=tracing(receiver),
                                     **RESUME_OFF)
            async with proxy(config) as client:
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        stream, [attempt] = by_kind(receiver.wait_for(2))
    assert payloads(parsed)[-1]["reason"] == "error"
    assert (stream.status, stream.attributes["error.type"]) == ("error", "upstream_rejected")
    assert "gen_ai.response.finish_reasons" not in stream.attributes
    assert attempt.attributes["error.type"] == "upstream_rejected"


async def test_a_recovered_stream_shows_the_cut_and_the_recovery() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            model = up.model("gpt", "gpt+drop_after=3+fault_attempts=1+continue_with=trailing_assistant",
                             recovery="continue", continue_with="trailing_assistant")
            config = upstream_config([model], tracing=tracing(receiver, capture_content=True), **RESUME_OFF)
            async with proxy(config) as client:
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("tell me"))
        stream, attempts = by_kind(receiver.wait_for(3))
    items = payloads(parsed)
    assert items[-1]["recovered"]["kind"] == "continue"
    assert [e.name for e in stream.events] == ["llm_sse_proxy.recovery.start", "llm_sse_proxy.retry",
                                               "llm_sse_proxy.recovery.done"]
    assert stream.events[0].attributes["error.type"] == "truncated"
    assert stream.events[2].attributes == {"llm_sse_proxy.recovery.kind": "continue", "llm_sse_proxy.model": "gpt"}
    assert [a.attributes.get("error.type") for a in attempts] == ["truncated", None]
    a = stream.attributes
    assert (a["llm_sse_proxy.recovered"], a["llm_sse_proxy.recovery.kind"]) == (True, "continue")
    # capture_content: the prompt and the whole answer the client got, in the conventions' message shape.
    assert json.loads(a["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text",
                                                                                     "content": "tell me"}]}]
    [answer] = json.loads(a["gen_ai.output.messages"])
    assert answer["parts"][0]["content"] == "".join(p.get("text", "") for p in items[:-1]) == DEFAULT_REPLY


async def test_a_client_disconnect_is_an_event_and_the_attempt_is_cancelled() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("gpt", "gpt+delay_ms=100")], tracing=tracing(receiver), **RESUME_OFF)
            async with proxy(config) as client:
                async with client.stream("POST", "/chat", json=chat_body()) as response:
                    async for _ in response.aiter_bytes():
                        break  # the first event: then the client leaves
                await up.recorder.wait_closed(0, timeout=5)
        stream, [attempt] = by_kind(receiver.wait_for(2))
    assert [e.name for e in stream.events] == ["llm_sse_proxy.client.disconnect"]
    assert stream.events[0].attributes == {"llm_sse_proxy.reason": "cancelled"}
    assert stream.attributes["llm_sse_proxy.terminate.reason"] == "cancelled" and stream.status == "unset"
    assert (attempt.status, attempt.attributes["error.type"]) == ("error", "cancelled")


async def test_a_resumable_stream_records_the_disconnect_and_the_reconnect_with_its_cursor() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("gpt", "gpt+delay_ms=60")], tracing=tracing(receiver))
            async with proxy(config) as client:
                async with client.stream("POST", "/chat", json=chat_body()) as response:
                    sid = response.headers["x-stream-id"]
                    raw = b""
                    async for chunk in response.aiter_bytes():
                        raw += chunk
                        if raw.count(b"\n\n") >= 2:
                            break
                cursor = re.findall(rb"id: (\S+)", raw)[-1].decode()
                _, rest = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": cursor})
                metrics = (await client.get("/metrics")).text
        [stream] = [s for s in receiver.wait_for(2) if s.kind == "server"]
    assert payloads(rest)[-1]["reason"] == "stop"
    names = [e.name for e in stream.events]
    assert names == ["llm_sse_proxy.client.disconnect", "llm_sse_proxy.resume.reconnect"]
    assert stream.events[0].attributes == {"llm_sse_proxy.reason": "cancelled", "llm_sse_proxy.resumable": True}
    assert stream.events[1].attributes == {"llm_sse_proxy.resume.cursor": int(cursor.rsplit(":", 1)[1])}
    assert stream.attributes["llm_sse_proxy.stream_id"] == sid
    assert "llm_proxy_resume_reconnects_total 1.0" in metrics.splitlines()
    assert stream.attributes["llm_sse_proxy.terminate.reason"] == "stop"


async def test_a_non_streamed_openai_request_is_one_span_too_and_identity_only_when_asked() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("gpt", "gpt")], tracing=tracing(receiver, record_client=True))
            async with proxy(config) as client:
                reply = await client.post("/v1/chat/completions", json={"model": "gpt", **chat_body()})
        stream, [_] = by_kind(receiver.wait_for(2))
    assert reply.status_code == 200
    assert stream.attributes["llm_sse_proxy.door"] == "/v1/chat/completions"
    assert stream.attributes["llm_sse_proxy.client"] == "ip:127.0.0.1"


async def test_nothing_is_sent_and_no_header_added_with_tracing_off() -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("gpt", "gpt")], **RESUME_OFF)  # the default: off
            async with proxy(config) as client:
                await read_stream(client, "POST", "/chat", json=chat_body(), headers={"traceparent": TRACEPARENT})
                metrics = (await client.get("/metrics")).text
            sent = up.recorder.attempts[0].headers
        time.sleep(0.3)  # what would have been a few export intervals
    assert receiver.posts == [] and receiver.spans == []
    assert "traceparent" not in sent
    assert "llm_proxy_trace_spans_dropped_total{" not in metrics


async def test_a_hanging_receiver_neither_slows_streams_nor_holds_the_shutdown_and_drops_are_counted() -> None:
    """Streams with tracing exporting to a receiver that never answers, interleaved with streams through a
    proxy without tracing: their median times are compared as a ratio within this run (the machine is
    shared: no absolute time). A blocked stream would take the export timeout (5 s) or more."""
    with otlp_receiver(hang=True) as receiver:
        async with mock_upstream() as up:
            model = up.model("gpt", "gpt+delay_ms=5")
            traced = upstream_config([model], tracing=tracing(receiver, export_timeout=5, max_queue_size=4,
                                                              max_export_batch_size=2), **RESUME_OFF)
            async with proxy(traced) as on, proxy(upstream_config([model], **RESUME_OFF)) as off:
                times: dict[str, list[float]] = {"on": [], "off": []}
                for _ in range(12):
                    for name, client in (("off", off), ("on", on)):
                        started = time.perf_counter()
                        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
                        times[name].append(time.perf_counter() - started)
                        assert payloads(parsed)[-1]["reason"] == "stop"
                metrics = (await on.get("/metrics")).text
    # Reaching this line at all: the proxy's shutdown did not wait on the hanging export (it is bounded).
    ratio = statistics.median(times["on"]) / statistics.median(times["off"])
    assert ratio < 2, (ratio, times)
    assert receiver.posts  # it was tried
    dropped = float(re.search(r'llm_proxy_trace_spans_dropped_total\{reason="queue_full"\} (\S+)', metrics)[1])
    assert dropped > 0


async def test_the_trace_tree_in_operations_md_is_what_a_run_prints() -> None:
    from scripts.trace_tree import run, tree

    def shape(text: str) -> str:  # times, durations and the retry's jittered wait differ from run to run
        return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", text).replace(" ", "").strip()

    assert shape(tree(await run())) == shape(block("trace-tree"))


@pytest.mark.parametrize("dialect", ["anthropic", "gemini", "ollama"])
async def test_the_native_adapters_send_the_attempts_trace_context_too(dialect: str) -> None:
    with otlp_receiver() as receiver:
        async with mock_upstream() as up:
            config = upstream_config([up.model("m", "m", dialect)], tracing=tracing(receiver), **RESUME_OFF)
            async with proxy(config) as client:
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(),
                                              headers={"traceparent": TRACEPARENT})
            sent = up.recorder.attempts[0].headers
        stream, [attempt] = by_kind(receiver.wait_for(2))
    assert payloads(parsed)[-1]["reason"] == "stop"
    assert sent["traceparent"] == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    assert stream.attributes["gen_ai.provider.name"] == dialect
