"""The mock upstream's hostile and odd faults (issue 16): bodies that are wrong in ways real servers are.

They are options like the others (``x-mock-<name>`` headers or a ``+name=value`` model suffix); K counts
content chunks, as in ``server.py``:

- ``bom=1``: the body starts with a UTF-8 BOM, and the role chunk is left out, so the first event has text.
- ``not_sse=json|html``: a 200 that is not an event stream: the whole completion as JSON, or an HTML page.
- ``reject_after=K``: K content chunks, then an in-band ``context_length_exceeded`` error and ``[DONE]``.
- ``blank_after=K``: K content chunks, then ``blank_bytes`` (default 16 MiB) of blank lines, then the rest.
  With ``gzip=1`` that is a few KiB on the wire: a decompression bomb.
- ``corrupt_gzip_after=K`` (with ``gzip=1``): K content chunks, then bytes that are not deflate data.
- ``bad_finish=1``: ``finish_reason`` is an object, not a string.
- ``bad_usage=1``: the usage chunk's token counts are negative.
- ``linger=1``: after ``[DONE]`` the chunked body is left open (no last chunk) until the client goes away.
- ``broken_chunk_after=K``: K content chunks, then bytes that break the chunked framing, and the
  connection left open.
- ``echo_key=prefix|basic``: the ``fail`` error quotes the key without its last 4 characters, or as
  HTTP Basic credentials (base64 of ``user:key``); ``echo_key=1`` quotes it whole.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
from starlette.responses import HTMLResponse, JSONResponse, Response

from llm_sse_proxy.mock_upstream.recorder import Attempt

OPTIONS = frozenset({"bom", "not_sse", "reject_after", "blank_after", "blank_bytes", "corrupt_gzip_after",
                     "bad_finish", "bad_usage", "linger", "broken_chunk_after"})
BOM = b"\xef\xbb\xbf"
_CONTEXT_LENGTH = (b'data: {"error":{"message":"This model\'s maximum context length is 8192 tokens. However, your '
                   b'messages resulted in 9000 tokens. Please reduce the length of the messages.","type":'
                   b'"invalid_request_error","param":"messages","code":"context_length_exceeded"}}\n\n'
                   b"data: [DONE]\n\n")
_HTML = "<!doctype html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"
_NOT_DEFLATE = b"\xff" * 64
_BROKEN_FRAMING = b"zz\r\nnot a chunk size\r\n"

Stream = AsyncIterator[bytes]


def key_echo(bearer: str, mode: str) -> str:
    """The key as a careless server quotes it in an error message."""
    if mode == "prefix":
        return bearer[:-4] + "****"
    if mode == "basic":
        return "Basic " + base64.b64encode(f"user:{bearer}".encode()).decode()
    return bearer


def not_an_event_stream(opts: dict[str, str], completion: dict[str, Any]) -> Response | None:
    """The 200 that `not_sse` asks for, or None."""
    kind = opts.get("not_sse")
    if kind is None:
        return None
    if kind == "html":
        return HTMLResponse(_HTML)
    return JSONResponse(completion)


def alter_events(events: Any, opts: dict[str, str]) -> None:
    """`bad_finish` and `bad_usage`: edit the pre-encoded finish and usage chunks."""
    if opts.get("bad_finish") == "1":
        events.finish = re.sub(rb'"finish_reason":"\w+"', b'"finish_reason":{"type":"stop"}', events.finish)
    if opts.get("bad_usage") == "1" and events.usage:
        events.usage = re.sub(rb'"(prompt|completion|total)_tokens":(\d+)', rb'"\1_tokens":-\2', events.usage)


def wrap(stream: Stream, opts: dict[str, str], attempt: Attempt, transport: Any) -> Stream:
    """The event stream with this request's body faults applied (before any content-encoding)."""
    if opts.get("bom") == "1":
        stream = _with_bom(stream)
    for name, inject in (("reject_after", _reject), ("blank_after", _blanks), ("broken_chunk_after", _broken)):
        if name in opts:
            stream = _after(stream, int(opts[name]), attempt, name, lambda inject=inject: inject(opts, transport))
    if opts.get("linger") == "1":
        stream = _lingering(stream)
    return stream


def wrap_encoded(stream: Stream, opts: dict[str, str], attempt: Attempt) -> Stream:
    """The faults that act on the encoded (gzip) body."""
    if "corrupt_gzip_after" in opts:
        return _after(stream, int(opts["corrupt_gzip_after"]), attempt, "corrupt_gzip_after", _corrupt)
    return stream


async def _with_bom(stream: Stream) -> Stream:
    async with aclosing(stream):
        first = True
        async for index, piece in _counted(stream):
            if index == 0:
                continue  # the role chunk: without it the BOM sits before an event with text
            yield BOM + piece if first else piece
            first = False


async def _after(stream: Stream, k: int, attempt: Attempt, name: str, inject: Callable[[], Stream]) -> Stream:
    """Pass the role chunk and K content chunks, then what `inject` yields; then the rest, unless it ends."""
    async with aclosing(stream):
        async for index, piece in _counted(stream):
            yield piece
            if index == k:
                attempt.fault = name
                async for extra in inject():
                    if extra is None:
                        return
                    yield extra


async def _counted(stream: Stream) -> AsyncIterator[tuple[int, bytes]]:
    index = 0
    async for piece in stream:
        yield index, piece
        index += 1


async def _reject(opts: dict[str, str], transport: Any) -> AsyncIterator[bytes | None]:
    yield _CONTEXT_LENGTH
    yield None


async def _blanks(opts: dict[str, str], transport: Any) -> AsyncIterator[bytes]:
    piece = b"\n" * (1 << 20)
    left = int(opts.get("blank_bytes", 16 << 20))
    while left > 0:
        await anyio.lowlevel.checkpoint()  # a send to a gone client does not wait: let the disconnect in
        yield piece[:left]
        left -= len(piece)


async def _broken(opts: dict[str, str], transport: Any) -> AsyncIterator[bytes]:
    # Written past the server's chunked framing, after the chunks it has already written; a moment
    # later, so that the client most likely has those chunks in a read of their own, as in the wild.
    await anyio.sleep(0.05)
    transport.write(_BROKEN_FRAMING)
    await anyio.sleep_forever()  # cancelled by Starlette when the client goes away
    yield b""


async def _corrupt() -> AsyncIterator[bytes]:
    yield _NOT_DEFLATE


async def _lingering(stream: Stream) -> Stream:
    async with aclosing(stream):
        async for piece in stream:
            yield piece
    await anyio.sleep_forever()  # the body never ends; cancelled when the client goes away
