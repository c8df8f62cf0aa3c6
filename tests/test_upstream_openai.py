"""The OpenAI-compatible adapter against the mock upstream server, over real HTTP both ways."""

from __future__ import annotations

import httpx2
import openai
import orjson
import pytest

from llm_sse_proxy.adapters.http_client import HttpClients

from llm_sse_proxy.mock_upstream import Recorder, create_mock_upstream_app
from tests.conftest import assert_one_terminate_last, chat_body, payloads, proxy, read_stream, serve
from tests.test_sse import AWKWARD
from tests.upstream_fixtures import API_KEY, DIALECTS, Upstream, mock_upstream, upstream_config

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



async def test_each_request_carries_its_own_length_and_the_host() -> None:
    """The request is prepared once per model and only its body changes (adapters/openai_endpoint.py)."""
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")])) as client:
        await ask(client, "hi")
        await ask(client, "é" * 300)  # two bytes a character: the length counts bytes
    short, long = up.recorder.attempts
    assert int(short.headers["content-length"]) == len(orjson.dumps(short.body))
    assert int(long.headers["content-length"]) == len(orjson.dumps(long.body)) > 600
    assert short.headers["host"] == long.headers["host"] == httpx2.URL(up.url).netloc.decode()
    assert long.headers["authorization"] == "Bearer sk-test-canary-4f1b2c3d4e5f"


async def test_the_request_is_the_one_the_sdk_itself_sends() -> None:
    """Prepared once and sent on the transport's aiohttp session, the request still carries what the SDK's
    own request path sends: its auth, its headers, the configured default headers, the body."""
    options = {"default_headers": {"X-Extra": "yes"}, "default_query": {"api-version": "2024-10"}}
    async with mock_upstream() as up:
        async with proxy(upstream_config([up.model("gpt", "gpt-x", **options)])) as client:
            await ask(client, "hi")
        http = HttpClients(connect_timeout=5).new()
        sdk = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key=API_KEY, http_client=http, max_retries=0,
                                 default_headers=options["default_headers"], default_query=options["default_query"])
        try:
            stream = await sdk.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}],
                                                       stream=True, stream_options={"include_usage": True})
            async for _ in stream:
                pass
        finally:
            await http.aclose()
    ours, sdks = up.recorder.attempts
    assert ours.body == sdks.body
    sdk_only = {"x-stainless-read-timeout"}  # the SDK names a per-request timeout; the proxy's client has its own
    assert ours.headers == {k: v for k, v in sdks.headers.items() if k not in sdk_only}

@pytest.mark.parametrize("text", AWKWARD)
async def test_awkward_text_survives_both_hops(text: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")])) as client:
        got, terminate = await ask(client, "echo:" + text)
    assert got == text and terminate["reason"] == "stop"


async def test_a_gzip_compressed_upstream_stream_is_decoded() -> None:
    text = "gzip: é \u2028 😀 \r\n " * 40
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+gzip=1")])) as client:
        got, terminate = await ask(client, "echo:" + text)
    assert got == text and terminate["reason"] == "stop"
    assert up.recorder.attempts[0].finished


async def test_length_finish_reason() -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")])) as client:
        _, terminate = await ask(client, max_tokens=2)
    assert terminate["reason"] == "length"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_consecutive_streams_reuse_one_upstream_connection(dialect: str) -> None:
    recorder, client_ports = Recorder(), set()
    upstream_app = create_mock_upstream_app(recorder)

    async def counting(scope, receive, send):
        if scope["type"] == "http":
            client_ports.add(scope["client"][1])  # one port per TCP connection from the proxy
        await upstream_app(scope, receive, send)

    async with serve(counting) as url:
        config = upstream_config([Upstream(url, recorder).model("gpt", "gpt-x", dialect)])
        async with proxy(config) as client:
            for _ in range(3):
                text, terminate = await ask(client)
                assert terminate["reason"] == "stop" and text
    assert len(recorder.attempts) == 3 and len(client_ports) == 1
