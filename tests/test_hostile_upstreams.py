"""Hostile and odd upstreams (issue 16): no answer silently lost, no retry that bills again, no mislabelled
error, no event-loop stall. Each test runs the proxy and the mock upstream over real loopback HTTP."""

from __future__ import annotations

import json
import logging
import zlib

import anyio
import pytest

from llm_sse_proxy.adapters import decompress, upstream_http
from llm_sse_proxy.proxy.errors import UpstreamMalformed
from tests.conftest import proxy
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

REPLY = "Hello! This is the mock upstream, streaming a short canned reply one small chunk at a time."
FIRST_THREE = REPLY[:15]


def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]


async def test_a_leading_bom_hides_no_text() -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+bom=1")])) as client:
        text, terminate = await ask(client)
    assert text == REPLY and terminate["reason"] == "stop"


@pytest.mark.parametrize(("kind", "content_type"), [("json", "application/json"), ("html", "text/html")])
async def test_a_200_that_is_not_an_event_stream_is_asked_once_and_named(kind: str, content_type: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+not_sse={kind}")])) as client:
        text, terminate = await ask(client)
    assert text == "" and up.recorder.count() == 1  # one billed completion, not three
    assert terminate["error"]["type"] == "malformed_upstream_data"
    assert content_type in terminate["error"]["message"] and "not text/event-stream" in terminate["error"]["message"]


@pytest.mark.parametrize(("dialect", "expected"), [("anthropic", "text/event-stream"), ("gemini", "text/event-stream"),
                                                 ("ollama", "application/x-ndjson")])
@pytest.mark.parametrize(("kind", "content_type"), [("json", "application/json"), ("html", "text/html; charset=utf-8")])
async def test_a_native_200_of_the_wrong_media_type_is_asked_once_and_named(dialect: str, expected: str, kind: str,
                                                                            content_type: str) -> None:
    async with mock_upstream() as up:
        model = up.model("m", "model-x", dialect, default_headers={"x-mock-not-sse": kind})
        async with proxy(upstream_config([model])) as client:
            text, terminate = await ask(client)
        asked = up.recorder.count()
    assert text == "" and asked == 1  # a final answer: not retried, so billed once
    assert terminate["error"]["type"] == "malformed_upstream_data"
    assert terminate["error"]["message"] == f"the upstream answered 200 with content-type {content_type!r}, not {expected}"


@pytest.mark.parametrize(("after", "expected_text"), [(0, ""), (3, FIRST_THREE)])
async def test_context_length_exceeded_in_band_is_a_rejection_not_retried(after: int, expected_text: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+reject_after={after}")])) as client:
        text, terminate = await ask(client)
    assert text == expected_text and up.recorder.count() == 1
    assert terminate["error"]["type"] == "upstream_rejected"
    assert "context_length_exceeded" in terminate["error"]["message"]


@pytest.mark.parametrize("gzip", ["", "+gzip=1"])
async def test_a_flood_of_blank_lines_counts_against_the_event_bound(gzip: str) -> None:
    # 16 MiB of blank lines: 16 KiB on the wire when gzipped.
    async with mock_upstream() as up:
        model = up.model("gpt", f"gpt+blank_after=3{gzip}", max_event_bytes=256 * 1024)
        async with proxy(upstream_config([model])) as client:
            text, terminate = await ask(client)
    assert text == FIRST_THREE
    assert terminate["error"]["type"] == "malformed_upstream_data" and "without an event" in terminate["error"]["message"]


async def test_a_gzip_body_corrupt_mid_stream_is_malformed_data_without_a_stack(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+gzip=1+corrupt_gzip_after=3")])) as client:
        text, terminate = await ask(client)
    # zlib keeps nothing of a read it fails on: text that came in the same read as the corruption is lost.
    assert FIRST_THREE.startswith(text) and up.recorder.count() == 1
    assert terminate["error"]["type"] == "malformed_upstream_data" and "corrupt gzip" in terminate["error"]["message"]
    assert "Traceback" not in caplog.text


async def test_a_gzip_body_streams_whole() -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+gzip=1")])) as client:
        text, terminate = await ask(client)
    assert text == REPLY and terminate["reason"] == "stop"


async def test_a_finish_reason_that_is_an_object_is_malformed_and_the_stream_is_logged(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+bad_finish=1")])) as client:
        text, terminate = await ask(client)
        await anyio.sleep(0)
    assert text == REPLY
    assert terminate["error"]["type"] == "malformed_upstream_data" and "finish_reason" in terminate["error"]["message"]
    assert [line["reason"] for line in access_lines(caplog)] == ["error"]
    assert "Exception in ASGI application" not in caplog.text


async def test_negative_usage_is_dropped_and_the_answer_kept(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+bad_usage=1")])) as client:
        text, terminate = await ask(client)
        metrics = (await client.get("/metrics")).text
    assert text == REPLY and terminate["reason"] == "stop" and "usage" not in terminate
    [line] = access_lines(caplog)
    assert line["reason"] == "stop" and line["tokens_in"] is None
    assert "llm_proxy_tokens_total{" not in metrics
    assert "Exception in ASGI application" not in caplog.text


@pytest.mark.parametrize("resume", [True, False])  # a generation in its own task, or the response's producer
async def test_a_body_left_open_after_done_frees_the_client_and_its_slot_at_the_terminate(monkeypatch, resume) -> None:
    # The adapter drains a body after its end marker, to reuse the connection; make that drain long, so
    # that a response held open until it ends cannot pass the generous bound below.
    monkeypatch.setattr(upstream_http, "DRAIN_SECONDS", 30.0)
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+linger=1")], limits={"streams_per_client": 1},
                                 resume={"enabled": resume})
        async with proxy(config) as client:
            with anyio.fail_after(10):
                first = await ask(client)
                second = await ask(client)  # the first stream's slot is free as soon as its response has ended
    assert first[0] == second[0] == REPLY and first[1]["reason"] == second[1]["reason"] == "stop"


async def test_broken_chunked_framing_after_text_is_truncated_at_once() -> None:
    # The idle timeout is 5 s here; the default is 30 s. Without the workaround the stream ends as `timeout`.
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+broken_chunk_after=3")])) as client:
        text, terminate = await ask(client)
    # aiohttp drops what it buffered when it fails a body: text in the same read as the break can be lost.
    assert FIRST_THREE.startswith(text) and up.recorder.count() == 1
    assert terminate["error"]["type"] == "truncated"


async def test_inflating_a_bomb_yields_bounded_pieces_and_lets_other_tasks_run() -> None:
    bomb = zlib.compressobj(wbits=31)
    wire = bomb.compress(b"\n" * (8 << 20)) + bomb.flush()  # 8 MiB of blank lines in about 8 KiB
    turns = 0

    async def other_stream() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    async def one_read():
        yield wire

    sizes = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other_stream)
        await anyio.lowlevel.checkpoint()
        started = turns
        async for piece in decompress.decoded(one_read(), "gzip", step=64 * 1024):
            sizes.append(len(piece))
        tasks.cancel_scope.cancel()
    assert sum(sizes) == 8 << 20 and max(sizes) <= 64 * 1024
    assert turns - started >= len(sizes) - 1  # the other task ran between the steps of the one read


async def test_corrupt_deflate_data_is_malformed() -> None:
    async def body():
        yield b"\x78\x9c" + b"\xff" * 32  # a zlib header, then a block of a type that does not exist

    with pytest.raises(UpstreamMalformed, match="corrupt deflate"):
        async for _ in decompress.decoded(body(), "deflate"):
            pass
