"""The OpenAI-compatible adapter against the mock upstream server, over real HTTP both ways."""

from __future__ import annotations

import pytest

from tests.conftest import assert_one_terminate_last, chat_body, payloads, proxy, read_stream
from tests.test_sse import AWKWARD
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio


async def ask(client, content: str = "hi", **extra):
    _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(content, **extra))
    items = payloads(parsed)
    terminate = assert_one_terminate_last(items)
    return "".join(p["text"] for p in items[:-1]), terminate


async def test_streams_text_usage_and_finish_reason() -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt-x")])) as client:
        text, terminate = await ask(client, "hello", temperature=0.5, top_p=0.9, max_tokens=50, stop=["END"])
    assert text == "Hello! This is the mock upstream, streaming a short canned reply one small chunk at a time."
    assert terminate["reason"] == "stop" and terminate["model"] == "gpt"
    assert terminate["usage"]["completion_tokens"] > 0
    body = up.recorder.attempts[0].body
    assert body["model"] == "gpt-x" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.5, 0.9, 50, ["END"])
    assert up.recorder.attempts[0].headers["authorization"] == "Bearer sk-test-canary-4f1b2c3d4e5f"


@pytest.mark.parametrize("text", AWKWARD)
async def test_awkward_text_survives_both_hops(text: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")])) as client:
        got, terminate = await ask(client, "echo:" + text)
    assert got == text and terminate["reason"] == "stop"


async def test_length_finish_reason() -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")])) as client:
        _, terminate = await ask(client, max_tokens=2)
    assert terminate["reason"] == "length"
