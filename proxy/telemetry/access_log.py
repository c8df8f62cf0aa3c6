"""Request ids and the one structured (JSON) access-log line each stream ends with.

The line holds no prompt text unless `logging.log_prompts` is on, and never a query string: a stream
token travels in one, and a client may put a key there by mistake.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from llm_sse_proxy.proxy.relay.outcome import Outcome

log = logging.getLogger("llm_sse_proxy.access")

MAX_REQUEST_ID = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]")


def request_id(headers: Mapping[str, str]) -> str:
    """The client's `X-Request-ID` with anything but [A-Za-z0-9._:-] removed, or a new one."""
    given = _UNSAFE.sub("", headers.get("x-request-id", ""))[:MAX_REQUEST_ID]
    return given or uuid.uuid4().hex


def stream_line(
    *, request_id: str, client: str, model: str, outcome: Outcome, duration: float, prompt: str | None = None,
    bill: dict[str, Any] | None = None,
) -> dict[str, Any]:
    usage = outcome.usage
    line: dict[str, Any] = {
        "event": "stream",
        "request_id": request_id,
        "client": client,
        "model": model,
        "answered_by": outcome.model,
        "deployment": outcome.deployment,  # the label of the answering model's deployment (issue 22)
        "reason": outcome.reason,
        "error_type": outcome.error_type,
        "attempts": outcome.attempts,
        "retries": len(outcome.retries),
        "fallbacks": outcome.fallbacks,
        "chunks": outcome.chunks,
        "ttft": _seconds(outcome.ttft),
        "duration": _seconds(duration),
        "tokens_in": usage.prompt_tokens if usage else None,
        "tokens_out": usage.completion_tokens if usage else None,
        "client_disconnect": outcome.left_early() is not None,
        "grace": outcome.grace,
        "recovered": outcome.recovered,
        "malformed_chunks": outcome.malformed,
    }
    if bill is not None:
        line.update(bill)  # tokens billed, whether estimated, cost (issue 23)
    if prompt is not None:
        line["prompt"] = prompt
    return line


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each access line as it is, in one write: the CLI's handler for `llm_sse_proxy.access`."""

    def emit(self, record: logging.LogRecord) -> None:
        self.write(self.format(record))

    def write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")  # stderr is line-buffered: one write(2) a line, flushed
        except Exception:  # noqa: BLE001 -- as logging does: a failed log write must not fail the stream
            self.handleError(logging.makeLogRecord({"msg": text}))


def write(line: dict[str, Any]) -> None:
    """Log one access line: straight to the CLI's LineHandler when it is the logger's one destination
    (a LogRecord, its caller lookup and its formatting cost more than the line's JSON), else by logging."""
    level = logging.WARNING if line.get("client_disconnect") else logging.INFO
    text = _dumps(line)
    handlers = log.handlers
    direct = handlers[0] if len(handlers) == 1 and type(handlers[0]) is LineHandler else None
    if direct is not None and not log.propagate and log.isEnabledFor(level) and level >= direct.level:
        direct.write(text)
    else:
        log.log(level, "%s", text)


def _dumps(line: dict[str, Any]) -> str:
    """Compact JSON, by orjson; json for what orjson refuses (a logged prompt with a lone surrogate)."""
    try:
        return orjson.dumps(line).decode()
    except TypeError:
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _seconds(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
