"""The browser-facing event schema and its SSE encoding. Pure functions, no I/O.

Invariants (WHATWG HTML §9.2):
- every event is `id: N`, an optional `event:` name, one `data:` line of JSON, and a blank line, so a
  parser never sees a partial event and a payload never spans lines: JSON escapes CR and LF inside strings;
- answer text is always a default (unnamed) `message` event; every other kind is a named event, which
  an `EventSource` `message` listener never receives, sent only to a request that asked for it;
- U+2028 and U+2029 are escaped too, because line splitters built on `str.splitlines` break on them;
- a keep-alive is a comment line, which EventSource and the SDK decoders ignore.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from llm_sse_proxy.proxy.deltas import ToolCall, Usage

PING = b": ping\n\n"

_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def encode_event(event_id: int | bytes, payload: Mapping[str, Any], event: str | None = None) -> bytes:
    """One complete SSE event: `id:`, the `event:` name if any, and a single `data:` line of JSON.

    The id is a number, or the bytes of a resumable stream's `<sid>:<seq>` (proxy/resume/ids.py).
    """
    data = json_line(payload)
    if event is None:
        if isinstance(event_id, int):
            return b"id: %d\ndata: %s\n\n" % (event_id, data)
        return b"id: %s\ndata: %s\n\n" % (event_id, data)
    if isinstance(event_id, int):
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def json_line(value: Any) -> bytes:
    """`value` as compact JSON that fits on one SSE `data:` line (see the invariants above)."""
    try:
        # The bytes of json.dumps(ensure_ascii=False, compact) (tests/test_sse.py checks), ~10x faster.
        data = orjson.dumps(value)
    except orjson.JSONEncodeError:
        # A lone surrogate (half of an emoji split across upstream chunks) has no UTF-8 form;
        # as a JSON \\u escape the browser re-joins it with its other half. (Also ints over 64 bits.)
        data = _dumps_ascii(value).encode()
    if b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data:
        data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return data


def text_payload(text: str) -> dict[str, Any]:
    return {"text": text}


def tool_call_payload(index: int, call: ToolCall) -> dict[str, Any]:
    """A complete tool call: `arguments` is the JSON text the model wrote."""
    return {"index": index, "id": call.id, "name": call.name, "arguments": call.arguments}


def terminate_payload(
    reason: str,
    *,
    usage: Usage | None = None,
    error: tuple[str, str] | None = None,
    model: str | None = None,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    usage_details: bool = False,
    recovered: Mapping[str, Any] | None = None,
    retry_after: float | None = None,
    deployment: str | None = None,
) -> dict[str, Any]:
    """The one final event; `error` is (type, message). The fields a request gets only when it asked
    for named events (`usage_details`, `tool_calls`) come last, so older fields keep their bytes."""
    payload: dict[str, Any] = {"action": "terminate", "reason": reason}
    if model is not None:
        payload["model"] = model
    if usage is not None:
        payload["usage"] = _usage(usage, usage_details)
    if error is not None:
        payload["error"] = {"type": error[0], "message": error[1]}
        if retry_after:  # the upstream's Retry-After, as the HTTP header would say it: whole seconds
            payload["error"]["retry_after"] = max(1, math.ceil(retry_after))
    if tool_calls:
        payload["tool_calls"] = list(tool_calls)  # the tool_call events' payloads, in order
    if recovered is not None:
        payload["recovered"] = dict(recovered)  # {"kind", "after_chars", "model"}: a mid-stream recovery
    if deployment is not None:
        payload["deployment"] = deployment  # which of the model's deployments answered; for named-event clients
    return payload


def _usage(usage: Usage, details: bool) -> dict[str, int]:
    counts = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if details and usage.reasoning_tokens is not None:
        counts["reasoning_tokens"] = usage.reasoning_tokens
    if details and usage.cached_tokens is not None:
        counts["cached_tokens"] = usage.cached_tokens
    return counts
