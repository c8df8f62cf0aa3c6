"""A client that stops reading is cut off after `server.send_timeout`, as a disconnect; a slow one is not.

Real sockets: the stuck client shrinks its receive buffer and then reads nothing, so the proxy's writes
back up through the kernel and uvicorn's transport until its `send` waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import anyio
import pytest

from tests.conftest import RESUME_OFF, assert_one_terminate_last, make_config, payloads, proxy
from tests.sse_parse import parse_stream
from tests.test_disconnect import wait_for_log
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

# 16 MiB in 64 KiB chunks, 20 ms apart: far more than the socket buffers between us hold, and the upstream
# is still sending when the proxy gives up on the client, so its close can only come from the proxy.
BIG_REPLY = "0123456789abcdef" * (1 << 20)


async def open_raw_stream(base_url: str, content: str = "hi") -> tuple[socket.socket, bytes]:
    """POST /chat over a socket with a 4 KiB receive buffer; return it and its first bytes."""
    host, port = base_url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, so the window stays small
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, int(port)))
    body = json.dumps({"messages": [{"role": "user", "content": content}]}).encode()
    head = f"POST /chat HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    await loop.sock_sendall(sock, head.encode() + body)
    first = await loop.sock_recv(sock, 1024)
    assert first.startswith(b"HTTP/1.1 200"), first
    return sock, first


async def drain(sock: socket.socket) -> tuple[int, bool]:
    """Read what is left until the connection ends: the byte count, and whether it ended in a reset."""
    loop, received = asyncio.get_running_loop(), 0
    with anyio.fail_after(20):
        try:
            while chunk := await loop.sock_recv(sock, 1 << 16):
                received += len(chunk)
        except ConnectionResetError:
            return received, True
        finally:
            sock.close()
    return received, False


async def test_a_client_that_stops_reading_is_cut_off_and_its_upstream_closed(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream(reply=BIG_REPLY) as up:
        config = upstream_config([up.model("gpt", "gpt+chunk_chars=65536+delay_ms=20")], server={"send_timeout": 0.5},
                                 **RESUME_OFF)
        async with proxy(config) as client:
            sock, _ = await open_raw_stream(str(client.base_url).rstrip("/"))
            await wait_for_log(caplog, '"reason":"send_timeout"', timeout=15)
            await up.recorder.wait_closed(0, timeout=5)
            received, reset = await drain(sock)
            metrics = (await client.get("/metrics")).text
    assert received < len(BIG_REPLY) // 2
    assert reset  # aborted: a graceful close would have waited for the client to read its buffers first
    assert not up.recorder.attempts[0].finished
    assert 'llm_proxy_client_disconnects_total{reason="send_timeout"} 1.0' in metrics
    assert "llm_proxy_active_streams 0.0" in metrics
    line = next(r.getMessage() for r in caplog.records if "send_timeout" in r.getMessage())
    assert json.loads(line)["client_disconnect"] is True


async def test_a_slow_reader_that_keeps_reading_gets_the_whole_stream() -> None:
    reply = "x" * (1 << 20)
    model = {"name": "big", "adapter": "mock", "reply": reply, "chunk_chars": 16384, "chunk_delay_ms": 0}
    async with proxy(make_config([model], server={"send_timeout": 1.0})) as client:
        sock, raw = await open_raw_stream(str(client.base_url).rstrip("/"))
        loop = asyncio.get_running_loop()
        with anyio.fail_after(30):
            while not raw.endswith(b"0\r\n\r\n"):
                raw += await loop.sock_recv(sock, 16384)
                await anyio.sleep(0.005)  # about 3 MiB/s: slow, but never stuck for a second
        sock.close()
    body = raw.split(b"\r\n\r\n", 1)[1]
    items = payloads(parse_stream(dechunk(body)))
    assert assert_one_terminate_last(items)["reason"] == "stop"
    assert "".join(p.get("text", "") for p in items) == reply


async def test_an_idle_stream_is_not_taken_for_a_stuck_one() -> None:
    slow = {"name": "slow", "adapter": "mock", "reply": "late", "first_token_delay_ms": 1200, "chunk_delay_ms": 0}
    async with proxy(make_config([slow], server={"send_timeout": 0.2, "ping_interval": 30})) as client:
        response = await client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    items = payloads(parse_stream(response.content))
    assert "".join(p.get("text", "") for p in items) == "late"
    assert assert_one_terminate_last(items)["reason"] == "stop"


def dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)
