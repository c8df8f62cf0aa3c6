"""The browser-facing event schema and its SSE encoding. Pure functions, no I/O.

Invariants (WHATWG HTML §9.2):
- every event is `id: N`, one `data:` line of JSON, and a blank line, so a parser never sees a
  partial event and a payload never spans lines: JSON escapes CR and LF inside strings;
- U+2028 and U+2029 are escaped too, because line splitters built on `str.splitlines` break on them;
- a keep-alive is a comment line, which EventSource and the SDK decoders ignore.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.deltas import Usage

PING = b": ping\n\n"

_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def encode_event(event_id: int | bytes, payload: Mapping[str, Any]) -> bytes:
    """One complete SSE event: `id:` and a single `data:` line of JSON.

    The id is a number, or the bytes of a resumable stream's `<sid>:<seq>` (proxy/resume/ids.py).
    """
    try:
        # The bytes of json.dumps(ensure_ascii=False, compact) (tests/test_sse.py checks), ~10x faster.
        data = orjson.dumps(payload)
    except orjson.JSONEncodeError:
        # A lone surrogate (half of an emoji split across upstream chunks) has no UTF-8 form;
        # as a JSON \\u escape the browser re-joins it with its other half. (Also ints over 64 bits.)
        data = _dumps_ascii(payload).encode()
    if b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data:
        data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    if isinstance(event_id, int):
        return b"id: %d\ndata: %s\n\n" % (event_id, data)
    return b"id: %s\ndata: %s\n\n" % (event_id, data)


def text_payload(text: str) -> dict[str, Any]:
    return {"text": text}


def terminate_payload(
    reason: str,
    *,
    usage: Usage | None = None,
    error: tuple[str, str] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The one final event; `error` is (type, message)."""
    payload: dict[str, Any] = {"action": "terminate", "reason": reason}
    if model is not None:
        payload["model"] = model
    if usage is not None:
        payload["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    if error is not None:
        payload["error"] = {"type": error[0], "message": error[1]}
    return payload
