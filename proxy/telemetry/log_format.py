"""How log lines look: the request id on every line about a stream, and one format (issue 14).

The request id is kept in a context variable, set where the id is made (`proxy/doors/http.py::request_id`).
uvicorn runs each request in a task of its own, and asyncio copies the context into every task a request
starts, so the relay's lines, a resumable stream's generation and the adapters' lines all carry it,
and no other request's. A filter on each handler copies it onto the record.

`logging.format: text` (the default) keeps the readable lines, with ` request_id=…` appended when there
is one; `json` makes every line one JSON object, uvicorn's own included. The access lines are JSON
either way (proxy/telemetry/access_log.py) and carry the id already.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REQUEST_ID: ContextVar[str | None] = ContextVar("llm_sse_proxy.request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or None) on every record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


# Line breaks (the C0 controls, NEL, LS, PS), escapes that recolour a terminal, DEL: written as escapes.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` with every control character as a backslash escape: one value stays on one line (issue 26)."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class TextFormatter(logging.Formatter):
    """The readable format. Its values (a message quoting an upstream, a request id from a header) cannot
    start a line of their own, so no one can write a fake access line through them; a traceback's lines
    are indented under the line they belong to."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id:
            line += f" request_id={escape_controls(str(request_id))}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for extra in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if extra:
                line += "".join(f"\n    {escape_controls(part)}" for part in extra.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id when there is one, exc when raised."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)  # ASCII: a lone surrogate quoted from an upstream cannot fail the write


def formatter(style: str) -> logging.Formatter:
    return JsonFormatter() if style == "json" else TextFormatter()


def use_format(style: str, handlers: list[logging.Handler]) -> None:
    """Give `handlers` the `style` formatter and the request-id filter."""
    for handler in handlers:
        handler.setFormatter(formatter(style))
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
