"""Stream ids and event ids: `id: <sid>:<seq>`. Pure functions, no I/O.

The sid is a bearer capability: 128 bits from the OS's CSPRNG (OWASP ASVS 7.2.3), 22 URL-safe
characters. The seq numbers a stream's events 1, 2, 3..., the terminate included; a cursor N means
"I have every event up to N". A cursor is never echoed in an error message.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from llm_sse_proxy.proxy.resume.errors import InvalidCursor

SID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")
MAX_SEQ = 2**53  # what a JavaScript number holds exactly
_SEQ = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A parsed Last-Event-ID: the stream it names (None for a bare seq) and the last seq seen."""

    sid: str | None
    seq: int


def new_sid() -> str:
    return secrets.token_urlsafe(16)


def is_sid(value: str) -> bool:
    return SID_PATTERN.fullmatch(value) is not None


def format_id(sid: str, seq: int) -> str:
    return f"{sid}:{seq}"


def parse_cursor(value: str) -> Cursor:
    """`<sid>:<seq>` or a bare `<seq>`; raises InvalidCursor for anything else."""
    sid, colon, seq = value.strip().rpartition(":")
    if colon and not is_sid(sid):
        raise InvalidCursor("Last-Event-ID must be '<stream id>:<seq>' as sent in the stream's events")
    if _SEQ.fullmatch(seq) is None or int(seq) > MAX_SEQ:
        raise InvalidCursor("Last-Event-ID must end with the event's sequence number")
    return Cursor(sid if colon else None, int(seq))


def pick_cursor(header: str | None, query: str | None) -> str | None:
    """The cursor a client sent: the Last-Event-ID header wins over ?lastEventId= (a reload's fallback)."""
    return header if header is not None else query


def resume_after(sid: str, header: str | None, query: str | None) -> int:
    """The seq to resume stream `sid` after: 0 (from the start) when no cursor was sent.

    A cursor naming another stream is refused, so an id from one stream cannot read another.
    """
    raw = pick_cursor(header, query)
    if raw is None or raw.strip() == "":
        return 0
    cursor = parse_cursor(raw)
    if cursor.sid is not None and cursor.sid != sid:
        raise InvalidCursor("Last-Event-ID names another stream")
    return cursor.seq
