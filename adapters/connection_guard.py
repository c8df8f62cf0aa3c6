"""A workaround for aiohttp 3.14.5: a body whose chunked framing breaks never ends (issue 16).

`ResponseHandler.data_received` (aiohttp/client_proto.py) catches the parser's error, closes the
transport and fails the protocol's own queue, but not the response's payload: a reader waiting on
the body waits forever (the proxy's idle timeout then ended the stream as `timeout`). Here, while a
response is read, the connection's `closed` future (public since aiohttp 3.10) is watched: when the
connection goes while the payload is still open, the payload is ended, so the reader gets what
arrived before the break, then the end of the body, and the adapter reports a truncated answer.

Anything else than the aiohttp transport (httpx2's own, a MockTransport) is left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2


@contextmanager
def ending_body_with_connection(response: httpx2.Response) -> Iterator[None]:
    """While the block runs, a lost connection ends `response`'s aiohttp payload."""
    protocol, payload = _protocol_and_payload(response)
    if protocol is None:
        yield
        return
    closed = protocol.closed  # None when the connection is already gone
    if closed is None:
        _end(payload)
        yield
        return

    def on_close(future: asyncio.Future[None]) -> None:
        _retrieve(future)
        _end(payload)

    closed.add_done_callback(on_close)
    try:
        yield
    finally:
        closed.remove_done_callback(on_close)
        # The future now exists and may fail later, with no one left to retrieve its exception.
        closed.remove_done_callback(_retrieve)
        closed.add_done_callback(_retrieve)


def _protocol_and_payload(response: httpx2.Response) -> tuple[Any, Any]:
    # The transport's stream, inside httpx2's BoundAsyncStream when the client sent the request.
    stream = getattr(response.stream, "_stream", response.stream)
    aiohttp_response = getattr(stream, "_aiohttp_response", None)
    connection = getattr(aiohttp_response, "connection", None)
    protocol = getattr(connection, "protocol", None)
    if protocol is None or not hasattr(protocol, "closed"):
        return None, None
    return protocol, aiohttp_response.content  # type: ignore[union-attr]


def _end(payload: Any) -> None:
    if not payload.is_eof():
        payload.feed_eof()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
