"""Incremental decoding of an upstream `text/event-stream` body (WHATWG HTML §9.2.6).

Lines end only at CR, LF or CRLF: not at U+2028 and the other breaks that `str.splitlines` (and so
httpx's `aiter_lines`) also splits on, which models do emit inside JSON (streaming-pitfalls.md 7.6).
One leading UTF-8 BOM is dropped, even when it is split across reads, as the spec's UTF-8 decode does.

Nothing grows without bound: more than `max_event` bytes that complete no event raise
UpstreamMalformed. That is an unfinished line longer than that, or the lines since the last event
(the data, comments, other fields, and blank lines that dispatch nothing) adding up to more. Each
read is checked as it arrives, so an oversized line is caught while it is still unfinished, at most
one read past the bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from llm_sse_proxy.proxy.deltas import Delta, Finish, MalformedChunk
from llm_sse_proxy.proxy.errors import UpstreamMalformed, UpstreamTruncated

MAX_EVENT = 1 << 20  # 1 MiB: a chat delta is a few hundred bytes
BOM = b"\xef\xbb\xbf"


class EventStreamDecoder:
    """Feed it body bytes; it returns the `(event, data)` of each event completed so far."""

    __slots__ = ("_partial", "_data", "_size", "_event", "_after_cr", "_max_event", "_head")

    def __init__(self, max_event: int = MAX_EVENT) -> None:
        self._max_event = max_event
        self._partial = b""
        self._data: list[bytes] = []
        self._size = 0  # bytes of the lines since the last event
        self._event = b""
        self._after_cr = False
        self._head: bytes | None = b""  # the body's first bytes while a BOM is still possible; then None

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if self._head is not None:
            chunk = self._without_bom(chunk)
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across two reads
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._after_cr = False
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > self._max_event:
            raise UpstreamMalformed(f"the upstream sent a line longer than {self._max_event} bytes")
        events = []
        for line in lines:
            if line:
                self._field(line)
            elif self._data:
                data = b"\n".join(self._data).decode("utf-8", "replace")
                events.append((self._event.decode("utf-8", "replace") or "message", data))
                self._data, self._size, self._event = [], 0, b""
            else:
                self._event = b""
                self._grow(1)  # a blank line that dispatches nothing: a flood of them is no event either
        return events

    def _without_bom(self, chunk: bytes) -> bytes:
        head = self._head + chunk  # type: ignore[operator]
        if len(head) < len(BOM) and BOM.startswith(head):
            self._head = head  # too short to tell yet
            return b""
        self._head = None
        return head[len(BOM):] if head.startswith(BOM) else head

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":  # the hot path: inline, not through _grow
            self._size += len(value) + 1  # the event's size as the browser would get it
            if self._size > self._max_event:
                self._grow(0)  # raises
            self._data.append(value)
            return
        self._grow(len(line) + 1)  # comments (keep-alives) and other fields
        if name == b"event":
            self._event = value

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > self._max_event:
            if self._data:
                raise UpstreamMalformed(f"the upstream sent an event bigger than {self._max_event} bytes")
            raise UpstreamMalformed(f"the upstream sent over {self._max_event} bytes without an event")

class EventReader(Protocol):
    """One answer's state: the deltas of each event's data, in order (a Finish last)."""

    def read(self, data: str) -> Iterable[Delta]: ...


async def event_deltas(body: AsyncIterator[bytes], reader: EventReader, max_event: int,
                       unfinished: str) -> AsyncIterator[Delta]:
    """The deltas of an event-stream body, up to the Finish; a body that ends before it raises
    UpstreamTruncated(`unfinished`)."""
    decoder = EventStreamDecoder(max_event)
    feed, read = decoder.feed, reader.read  # bound once: this loop runs per chunk
    async for raw in body:
        for _event, data in feed(raw):
            try:
                deltas = read(data)
            except UpstreamMalformed as exc:  # one bad event: the proxy decides (faults.on_malformed_chunk)
                deltas = (MalformedChunk(exc.message),)
            for delta in deltas:
                yield delta
                if isinstance(delta, Finish):
                    return
    raise UpstreamTruncated(unfinished)
