"""Incremental decoding of a newline-delimited JSON body (`application/x-ndjson`), one object a line.

JSON text never holds a raw LF (it escapes it), so a line ends at LF only; a CR before it is JSON
whitespace. A line longer than `max_line` bytes raises UpstreamMalformed instead of growing without
bound, checked as each read arrives, like the event-stream decoder.
"""

from __future__ import annotations

from llm_sse_proxy.proxy.errors import UpstreamMalformed

MAX_LINE = 1 << 20  # 1 MiB, as for an SSE event


class LineDecoder:
    """Feed it body bytes; it returns the non-blank lines completed so far."""

    __slots__ = ("_partial", "_max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._partial = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > self._max_line or any(len(line) > self._max_line for line in lines):
            raise UpstreamMalformed(f"the upstream sent a line longer than {self._max_line} bytes")
        return [line for line in lines if line.strip()]

    def rest(self) -> bytes:
        """What is left after the body ended: a last line without its LF, or nothing."""
        rest, self._partial = self._partial, b""
        return rest.strip()
