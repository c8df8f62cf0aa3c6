"""HTTP/1.0 clients: chunked transfer coding is HTTP/1.1 only (RFC 9112 §7.1), so a stream to a 1.0 client is
close-delimited (issue 16). Raw sockets, since HTTP clients hide the framing."""

from __future__ import annotations

import asyncio
import json

import anyio
import pytest

from llm_sse_proxy.proxy.app import create_app
from tests.conftest import make_config, serve
from tests.sse_parse import parse_stream

pytestmark = pytest.mark.anyio


async def exchange(url: str, request: bytes) -> tuple[bytes, bytes]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        with anyio.fail_after(10):
            raw = await reader.read()  # to the end: the server closes the connection after a 1.0 response
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.lower(), body


def post(version: bytes) -> bytes:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    return (b"POST /chat HTTP/" + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


@pytest.mark.parametrize("request_bytes", [post(b"1.0"), b"GET /stream?prompt=hi HTTP/1.0\r\nHost: x\r\n\r\n"])
async def test_a_stream_to_an_http_1_0_client_is_close_delimited(request_bytes: bytes) -> None:
    async with serve(create_app(make_config())) as url:
        head, body = await exchange(url, request_bytes)
    assert head.startswith(b"http/1.1 200") and b"text/event-stream" in head
    assert b"transfer-encoding" not in head and b"content-length" not in head and b"connection: close" in head
    events = [json.loads(e.data) for e in parse_stream(body).events]  # no chunk-size lines among them
    assert events[-1]["action"] == "terminate" and events[-1]["reason"] == "stop"
    assert "".join(e.get("text", "") for e in events[:-1])


async def test_http_1_1_streams_stay_chunked_and_1_0_json_keeps_its_length() -> None:
    async with serve(create_app(make_config())) as url:
        chunked, _ = await exchange(url, post(b"1.1").replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
        models, body = await exchange(url, b"GET /models HTTP/1.0\r\n\r\n")
    assert b"transfer-encoding: chunked" in chunked
    assert b"content-length: %d" % len(body) in models and json.loads(body)["default"] == "mock"
