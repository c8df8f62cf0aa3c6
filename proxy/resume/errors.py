"""The resume layer's exceptions, in the tree of `proxy/errors.py`; the app's boundary maps them.

ProxyError
├── RequestError
│   ├── InvalidCursor       400 `invalid_last_event_id`: malformed Last-Event-ID / ?lastEventId=
│   ├── StreamNotFound      404 `stream_not_found`: unknown, expired, or another client's stream
│   └── StoreUnavailable    503 + Retry-After `store_unavailable`: the store cannot be reached, or is full
└── StoreError              raised to the stream's owner or reader, never rendered as JSON
    ├── StreamExists        create() with a sid that is already in use
    ├── Fenced              append()/finish() by an owner that no longer holds the stream (lease lost, finished)
    ├── CursorAhead         read() after a seq the stream has not reached (data loss, or a forged cursor)
    └── ResumeGap           read() after a seq older than the first one still retained
"""

from __future__ import annotations

from llm_sse_proxy.proxy.errors import BadRequest, NotFound, Overloaded, ProxyError


class InvalidCursor(BadRequest):
    type = "invalid_last_event_id"


class StreamNotFound(NotFound):
    type = "stream_not_found"

    def __init__(self, message: str = "no such stream: it is unknown, expired, or not yours") -> None:
        super().__init__(message)


class StoreUnavailable(Overloaded):
    type = "store_unavailable"


class StoreError(ProxyError):
    type = "store_error"


class StreamExists(StoreError):
    type = "stream_exists"


class Fenced(StoreError):
    """The writer lost the stream: it must cancel its upstream and write nothing more."""

    type = "owner_lost"


class CursorAhead(StoreError):
    type = "resume_gap"


class ResumeGap(StoreError):
    type = "resume_gap"
