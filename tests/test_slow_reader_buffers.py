"""What a client that stops reading costs the proxy (issue 16): the bytes written to it and not yet read, held in
the proxy's socket (kernel send queue) and transport. Linux autotunes the send buffer up to 4 MiB (tcp_wmem);
the proxy bounds it. A real uvicorn server in this process, so the test can look at its side of the socket."""

from __future__ import annotations

import asyncio
import fcntl
import json
import socket
import struct
import termios

import anyio
import pytest
import uvicorn

from llm_sse_proxy.proxy.app import create_app
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

BOUND = 256 * 1024  # SO_SNDBUF of 64 KiB (the kernel doubles it), the transport's 16 KiB, one event


def queued(sock: socket.socket, request: int) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]


async def test_a_client_that_stops_reading_holds_a_bounded_number_of_bytes_in_the_proxy() -> None:
    # About 300,000 small events (10 MiB): far more than any buffer on the way.
    body = json.dumps({"messages": [{"role": "user", "content": "echo:" + "abcdefghij" * 60_000}]}).encode()
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+chunk_chars=2")], limits={"max_chars": 1_000_000},
                                 server={"max_body_bytes": 2_000_000})
        server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning"))
        task = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        client = socket.socket()
        try:
            with anyio.fail_after(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.setblocking(False)
            await loop.sock_connect(client, server.servers[0].sockets[0].getsockname())
            await loop.sock_sendall(client, b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert await loop.sock_recv(client, 12) == b"HTTP/1.1 200"
            held = await stalled_bytes(server)
        finally:
            client.close()
            server.should_exit = True
            await asyncio.wait_for(task, 10)
    assert 0 < held <= BOUND, f"{held / 1024:.0f} KiB"


async def stalled_bytes(server: uvicorn.Server) -> int:
    """The proxy side's unsent bytes, once they stop changing (the proxy is then waiting on the client)."""
    figures: list[int] = []
    with anyio.fail_after(20):
        while len(figures) < 5 or len(set(figures[-5:])) > 1:
            await asyncio.sleep(0.1)
            [connection] = list(server.server_state.connections)
            transport = connection.transport  # type: ignore[attr-defined]
            unsent = queued(transport.get_extra_info("socket"), termios.TIOCOUTQ)  # SIOCOUTQ
            figures.append(unsent + transport.get_write_buffer_size())
    return figures[-1]
