"""The ASGI app class: the last place where uvicorn's transport can be reached, to bound and abort it."""

from __future__ import annotations

import asyncio
import functools
import socket
import struct

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from llm_sse_proxy.proxy.doors.response import ABORT, SEND_BODY
from llm_sse_proxy.proxy.server.http10 import close_delimited

# A stream is a few KiB a second: small buffers cost it nothing, and bound a stalled client's cost.
SEND_BUFFER_BYTES = 64 * 1024
WRITE_HIGH_WATER = 16 * 1024


class ProxyApp(Starlette):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ASGI has no way to abort a connection, and a graceful close waits for a client that stopped
        # reading. Under uvicorn `send` is a bound method of the request cycle, which holds the
        # transport; Starlette's middlewares wrap `send`, so this is the last place to reach it.
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope[ABORT] = functools.partial(reset_connection, transport)
                bound_send_buffers(transport)
            if scope.get("http_version") == "1.0":
                send = close_delimited(send)
            scope[SEND_BODY] = send
        await super().__call__(scope, receive, send)


def reset_connection(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset: the kernel drops what the client never read, instead of holding it and
    waiting for the client (a plain close, even asyncio's abort(), sends it all first)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed: nothing left to drop
    transport.abort()  # type: ignore[attr-defined]


def bound_send_buffers(transport: asyncio.BaseTransport) -> None:
    """Bound what a client that stops reading holds in the proxy: the kernel's send buffer (autotuned up to
    4 MiB on Linux; set, it stays at twice SEND_BUFFER_BYTES) and the transport's (issue 16, docs/security.md)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:
            pass  # already closed
    transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]
