"""The whole path over real HTTP: uvicorn on a free loopback port, the mock adapter behind it."""

from __future__ import annotations

import json

import httpx2
import pytest

from llm_sse_proxy.proxy.app import create_app
from tests.conftest import (
    RESUME_OFF,
    assert_one_terminate_last,
    chat_body,
    make_config,
    payloads,
    proxy,
    read_stream,
    serve,
)
from tests.test_sse import AWKWARD

pytestmark = pytest.mark.anyio

ECHO = {"name": "echo", "adapter": "mock", "echo": True, "chunk_chars": 3, "chunk_delay_ms": 0}


async def test_post_chat_streams_the_reply_then_one_terminate() -> None:
    reply = "Hello from the mock, in chunks."
    model = {"name": "mock", "adapter": "mock", "reply": reply, "chunk_chars": 4, "chunk_delay_ms": 0}
    config = make_config([model], **RESUME_OFF)  # numbered 1, 2...: with resume, <sid>:1... (test_resume_http.py)
    async with proxy(config) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    assert response.status_code == 200
    items = payloads(parsed)
    terminate = assert_one_terminate_last(items)
    assert "".join(p["text"] for p in items[:-1]) == reply
    assert all(p["text"] for p in items[:-1])
    assert terminate["reason"] == "stop" and terminate["model"] == "mock"
    assert terminate["usage"]["completion_tokens"] == len(items) - 1
    assert [e.id for e in parsed.events] == [str(i) for i in range(1, len(items) + 1)]
    assert parsed.leftover == ""


async def test_get_stream_uses_prompt_system_and_model() -> None:
    config = make_config([{"name": "mock", "adapter": "mock", "chunk_delay_ms": 0}, ECHO])
    async with proxy(config) as client:
        _, parsed = await read_stream(client, "GET", "/stream", params={"prompt": "say this", "model": "echo", "system": "s"})
    items = payloads(parsed)
    assert "".join(p.get("text", "") for p in items) == "say this"
    assert assert_one_terminate_last(items)["model"] == "echo"


async def test_get_stream_without_prompt_uses_the_default_prompt() -> None:
    config = make_config([ECHO], default_prompt="the default prompt")
    async with proxy(config) as client:
        _, parsed = await read_stream(client, "GET", "/stream")
    assert "".join(p.get("text", "") for p in payloads(parsed)) == "the default prompt"


# A URL has no room for the 64 KiB case; POST carries it.
CASES = [("POST", text) for text in AWKWARD] + [("GET", text) for text in AWKWARD if len(text) < 4000]


@pytest.mark.parametrize(("method", "text"), CASES)
async def test_awkward_text_comes_out_exactly_as_it_went_in(method: str, text: str) -> None:
    config = make_config([ECHO])
    async with proxy(config) as client:
        if method == "GET":
            _, parsed = await read_stream(client, "GET", "/stream", params={"prompt": text})
        else:
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(text))
    items = payloads(parsed)
    assert_one_terminate_last(items)
    assert "".join(p["text"] for p in items[:-1]) == text


async def test_headers_match_the_article() -> None:
    async with proxy(make_config()) as client:
        response, _ = await read_stream(client, "GET", "/stream", headers={"origin": "http://page.test", "accept-encoding": "gzip"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "content-encoding" not in response.headers
    assert "content-length" not in response.headers


async def test_keep_alive_comments_while_the_upstream_is_silent() -> None:
    slow = {"name": "slow", "adapter": "mock", "reply": "late", "first_token_delay_ms": 700, "chunk_delay_ms": 0}
    config = make_config([slow], server={"ping_interval": 0.2})
    async with proxy(config) as client:
        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    assert len(parsed.comments) >= 2, parsed.comments
    assert "".join(p.get("text", "") for p in payloads(parsed)) == "late"


async def test_scripted_mid_stream_failure_ends_with_an_error_terminate() -> None:
    failing = {"name": "m", "adapter": "mock", "reply": "abcdefghij", "chunk_chars": 2, "chunk_delay_ms": 0,
               "fail_after_chunks": 2, "fail_kind": "rejected", "fail_message": "boom"}
    async with proxy(make_config([failing])) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    items = payloads(parsed)
    terminate = assert_one_terminate_last(items)
    assert [p["text"] for p in items[:-1]] == ["ab", "cd"]
    assert terminate["reason"] == "error"
    assert terminate["error"] == {"type": "upstream_rejected", "message": "boom"}


async def test_max_tokens_ends_with_reason_length() -> None:
    config = make_config([{"name": "m", "adapter": "mock", "reply": "abcdefghij", "chunk_chars": 1, "chunk_delay_ms": 0}])
    async with proxy(config) as client:
        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(max_tokens=3))
    items = payloads(parsed)
    assert [p.get("text") for p in items[:-1]] == ["a", "b", "c"]
    assert assert_one_terminate_last(items)["reason"] == "length"


async def test_head_answers_headers_without_asking_the_model() -> None:
    app = create_app(make_config())
    async with serve(app) as url, httpx2.AsyncClient(base_url=url) as client:
        response = await client.head("/stream", params={"prompt": "hi"})
        asked = app.state.runtime.upstreams["mock"].adapter.requests
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("text/event-stream")
    assert asked == []


async def test_a_reconnecting_event_source_is_told_to_stop() -> None:
    async with proxy(make_config()) as client:
        response = await client.get("/stream", headers={"last-event-id": "4"})
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error_type"),
    [
        ("POST", "/chat", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "invalid_request"),
        ("POST", "/chat", {"json": {"messages": "hi"}}, 400, "invalid_request"),
        ("POST", "/chat", {"json": {"messages": []}}, 400, "invalid_request"),
        ("POST", "/chat", {"json": chat_body(temperature="hot")}, 400, "invalid_request"),
        ("POST", "/chat", {"json": chat_body(model="no-such-model")}, 404, "not_found"),
        ("GET", "/stream", {"params": {"model": "no-such-model"}}, 404, "not_found"),
        ("POST", "/chat", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ("POST", "/chat", {"json": chat_body("x" * 2000)}, 413, "payload_too_large"),
        ("GET", "/chat", {}, 405, "method_not_allowed"),
        ("POST", "/stream", {}, 405, "method_not_allowed"),
        ("DELETE", "/chat", {}, 405, "method_not_allowed"),
        ("GET", "/nowhere", {}, 404, "not_found"),
    ],
)
async def test_request_errors_are_json(method: str, path: str, kwargs: dict, status: int, error_type: str) -> None:
    async with proxy(make_config(server={"max_body_bytes": 1000})) as client:
        response = await client.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["type"] == error_type and body["error"]["message"]
    assert "Traceback" not in response.text


async def test_body_cap_holds_without_content_length() -> None:
    async def chunks():
        for _ in range(20):
            yield b"x" * 100

    async with proxy(make_config(server={"max_body_bytes": 1000})) as client:
        response = await client.post("/chat", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_cors_preflight_for_json_post() -> None:
    config = make_config(server={"cors_origins": ["http://allowed.test"]})
    async with proxy(config) as client:
        ok = await client.options("/chat", headers={
            "origin": "http://allowed.test", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type"})
        denied = await client.options("/chat", headers={
            "origin": "http://evil.test", "access-control-request-method": "POST"})
        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers={"origin": "http://allowed.test"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://allowed.test"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "content-type" in ok.headers["access-control-allow-headers"].lower()
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
    assert_one_terminate_last(payloads(parsed))


async def test_healthz_and_models() -> None:
    config = make_config([{"name": "a", "adapter": "mock"}, {"name": "b", "adapter": "mock"}])
    async with proxy(config) as client:
        health = await client.get("/healthz")
        models = await client.get("/models")
    assert health.status_code == 200
    assert models.json() == {"default": "a", "models": [{"name": "a"}, {"name": "b"}], "auth": False}
    assert json.dumps(models.json()).count("adapter") == 0


async def test_models_says_whether_streams_need_a_key() -> None:
    digest = "sha256:" + "0" * 64
    async with proxy(make_config(auth={"keys": [digest]})) as client:
        models = await client.get("/models")  # needs no key itself: a page asks it before it has one
    assert models.status_code == 200 and models.json()["auth"] is True
    assert digest[7:] not in models.text
