"""The relay's events in Anthropic's Messages wire format: the SSE of a streamed message, or one `message`
object. Pure functions and small accumulators, no I/O.

Invariants (Anthropic's "Streaming Messages"; wire-formats.md §3 reads the same format from upstreams):
- every event is `event: <type>` and one `data:` line of JSON whose `type` repeats it, then a blank line;
- a stream is `message_start`, then content blocks, each `content_block_start`, its deltas and
  `content_block_stop`, then `message_delta` (stop reason, usage) and `message_stop`;
- one block is open at a time: answer text is a `text` block (`text_delta`), thinking a `thinking` block
  (`thinking_delta`), each tool call a `tool_use` block (`input_json_delta`); a new kind closes the open one;
- a failed answer ends with an `error` event and no `message_stop`: the SDKs raise on it, where a bare
  close would hand the caller a truncated message as if it were complete.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from llm_sse_proxy.proxy.relay.sse import json_line

PING = b'event: ping\ndata: {"type":"ping"}\n\n'
# The relay's named events each response asks for: thinking only when the request turned it on.
STREAM_EVENTS = frozenset({"refusal", "tool_call_delta"})
REPLY_EVENTS = frozenset({"refusal", "tool_call"})
THINKING = "reasoning"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "content_filter": "refusal", "refusal": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 408: "timeout_error",
                413: "request_too_large", 415: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def stop_reason(reason: str) -> str:
    """The relay's reason in Anthropic's terms; a stop at a stop sequence reads as `end_turn` (the relay
    does not say which sequence matched)."""
    return _STOP_REASONS.get(reason, "end_turn")


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status; `api_error` for the rest (a 5xx)."""
    return _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


# Hints that fit this door: its clients send the key as the SDK's api_key (x-api-key).
HINTS = {"invalid_api_key": " (the SDK's api_key, sent as x-api-key)"}


def error_body(status: int, kind: str, message: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """Anthropic's error object. The proxy's own type (README, "Errors") stays in the message; Anthropic's
    shape has no field for `param` or `code` (the message names the field already); a hint fits this door."""
    message += HINTS.get(code or "", "")
    return {"type": "error", "error": {"type": error_type(status), "message": f"{kind}: {message}"}}


def error_status(kind: str, upstream_status: int | None) -> int:
    """The HTTP status of a failure before anything was sent: the upstream's when the client can act on
    it (a bad request, a limit, Anthropic's 529 overload), else the proxy's gateway statuses."""
    if upstream_status in (400, 413, 422, 429, 529):
        return upstream_status
    if kind == "timeout":
        return 504
    if kind == "shutdown":
        return 503
    return 502


def usage_fields(usage: dict[str, int] | None) -> dict[str, Any]:
    """The terminate's usage in Anthropic's shape: `input_tokens` excludes cache reads, which have their own field."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = usage.get("cached_tokens")
    fields: dict[str, Any] = {"input_tokens": usage["prompt_tokens"] - (cached or 0),
                              "output_tokens": usage["completion_tokens"]}
    if cached is not None:
        fields["cache_read_input_tokens"] = cached
    if "reasoning_tokens" in usage:
        fields["output_tokens_details"] = {"thinking_tokens": usage["reasoning_tokens"]}
    return fields


def terminate_error(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(type, message) of a terminate that did not finish the answer; None when it did."""
    if payload["reason"] == "shutdown":
        return "shutdown", "the proxy is shutting down; send the request again"
    error = payload.get("error")
    if payload["reason"] == "error" or error is not None:
        error = error or {"type": "error", "message": "the answer failed"}
        return error["type"], error["message"]
    return None


def message_head(message_id: str, model: str) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None}


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json_line(payload) + b"\n\n"


class MessageEncoder:
    """The SSE bytes of one streamed message. The text delta is built from prepared bytes (the hot path:
    one JSON dump of the text and a join per chunk, as the other doors')."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self._index = -1  # the open block's index
        self._open: str | None = None  # its kind: text, thinking, tool_use
        self._tool: int | None = None  # the relay's index of the open tool call
        self._text_head = b""

    def start(self, model: str) -> bytes:
        """`message_start` (usage is known at the end; it comes in `message_delta`), then a ping, as Anthropic sends."""
        message = {**message_head(self.message_id, model), "usage": {"input_tokens": 0, "output_tokens": 0}}
        return _event("message_start", {"type": "message_start", "message": message}) + PING

    def text(self, text: str) -> bytes:
        if self._open == "text":
            return b"".join((self._text_head, json_line(text), b"}}\n\n"))
        opened = self._begin("text", {"type": "text", "text": ""})
        self._text_head = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                           b'"delta":{"type":"text_delta","text":' % self._index)
        return opened + self.text(text)

    def thinking(self, text: str) -> bytes:
        opened = b"" if self._open == "thinking" else self._begin("thinking", {"type": "thinking", "thinking": "",
                                                                                "signature": ""})
        return opened + self._delta({"type": "thinking_delta", "thinking": text})

    def tool_piece(self, piece: dict[str, Any]) -> bytes:
        """One `tool_call_delta`: a call's first piece opens its `tool_use` block."""
        opened = b""
        if self._open != "tool_use" or piece["index"] != self._tool:
            block = {"type": "tool_use", "id": piece.get("id") or f"call_{piece['index']}",
                     "name": piece.get("name") or "", "input": {}}
            opened = self._begin("tool_use", block)
            self._tool = piece["index"]
        if not piece["arguments"]:
            return opened
        return opened + self._delta({"type": "input_json_delta", "partial_json": piece["arguments"]})

    def named(self, event: str, payload: dict[str, Any]) -> bytes | None:
        """A named relay event; None for kinds the door does not carry. A refusal is text: Anthropic's
        refusals are the answer's text with stop reason `refusal`."""
        if event == "tool_call_delta":
            return self.tool_piece(payload)
        if event == THINKING:
            return self.thinking(payload["text"])
        if event == "refusal":
            return self.text(payload["text"])
        return None

    def end(self, terminate: dict[str, Any]) -> bytes:
        """Close the open block, then `message_delta` with the stop reason and usage, then `message_stop`."""
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason(terminate["reason"]),
                                                    "stop_sequence": None},
                 "usage": usage_fields(terminate.get("usage"))}
        return self._close() + _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})

    def error(self, status: int, kind: str, message: str) -> bytes:
        """The in-band error that ends a stream after its start (no `message_stop` follows)."""
        return _event("error", error_body(status, kind, message))

    def _begin(self, kind: str, block: dict[str, Any]) -> bytes:
        closed = self._close()
        self._index += 1
        self._open = kind
        return closed + _event("content_block_start",
                               {"type": "content_block_start", "index": self._index, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = self._tool = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})


class MessageBuilder:
    """The events of one answer gathered into a `message` object: blocks in the order they came."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self._blocks: list[dict[str, Any]] = []

    def add(self, payload: dict[str, Any], event: str | None) -> None:
        if event is None or event == "refusal":
            self._append("text", payload["text"])
        elif event == THINKING:
            self._append("thinking", payload["text"])
        elif event == "tool_call":
            self._blocks.append({"type": "tool_use", "id": payload["id"], "name": payload["name"],
                                 "input": _arguments(payload["arguments"])})

    def message(self, model: str, terminate: dict[str, Any]) -> dict[str, Any]:
        return {**message_head(self.message_id, model), "content": self._blocks,
                "stop_reason": stop_reason(terminate["reason"]), "usage": usage_fields(terminate.get("usage"))}

    def _append(self, kind: str, text: str) -> None:
        if self._blocks and self._blocks[-1]["type"] == kind:
            self._blocks[-1][kind] += text
        elif kind == "thinking":
            self._blocks.append({"type": "thinking", "thinking": text, "signature": ""})
        else:
            self._blocks.append({"type": "text", "text": text})


def _arguments(text: str) -> Any:
    """A complete call's arguments as the object `input` holds; the relay checked they are JSON
    (proxy/relay/rich_events.py), which json reads where orjson refuses (lone surrogate escapes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
