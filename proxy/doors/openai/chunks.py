"""The relay's events in the chat-completions wire format: `chat.completion.chunk` SSE for a stream,
one `chat.completion` object otherwise. Pure functions and small accumulators, no I/O.

Invariants (wire-formats.md §1.1 reads the same format back from upstreams):
- every chunk is one `data:` line of JSON and a blank line; the first one carries `role: assistant`;
- answer text is `delta.content`, thinking `delta.reasoning_content` (as DeepSeek and vLLM send it), a
  refusal `delta.refusal`, tool-call pieces `delta.tool_calls` (id, type and name on a call's first piece);
- a finished answer ends with the chunk carrying `finish_reason`, then, when the request asked for it
  (`stream_options.include_usage`), the usage chunk with `choices: []`, then `data: [DONE]`;
- a failed answer ends with `data: {"error": {...}}` and no `[DONE]`: the OpenAI SDKs raise on it, where a
  bare close would hand the caller a truncated answer as if it were complete.
"""

from __future__ import annotations

from typing import Any

from llm_sse_proxy.proxy.doors.openai.errors import openai_error
from llm_sse_proxy.proxy.relay.sse import json_line

DONE = b"data: [DONE]\n\n"
# The relay's named events each door asks for: pieces of tool calls for a stream, whole calls for one reply.
STREAM_EVENTS = frozenset({"reasoning", "refusal", "tool_call_delta"})
REPLY_EVENTS = frozenset({"reasoning", "refusal", "tool_call"})
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
_DELTA_FIELDS = {"reasoning": "reasoning_content", "refusal": "refusal"}


def finish_reason(reason: str) -> str:
    """The relay's reason in OpenAI's terms; a refusal ends with `stop` there, as OpenAI's own does."""
    return reason if reason in _FINISH_REASONS else "stop"


def error_status(error_type: str, upstream_status: int | None) -> int:
    """The HTTP status of a failure that happened before anything was sent.

    A request the upstream found bad (too long, a bad schema) or a limit it hit is the client's to fix
    or wait for, so its status passes on; an upstream refusing the proxy's own key or model is not.
    """
    if upstream_status in (400, 413, 422, 429):
        return upstream_status
    if error_type == "timeout":
        return 504
    if error_type == "shutdown":
        return 503
    return 502


def error_body(status: int, error_type: str, message: str) -> dict[str, Any]:
    """OpenAI's error object; `code` is the proxy's own error type (README, "Errors")."""
    return openai_error(status, error_type, message)


def terminate_error(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(type, message) of a terminate that did not finish the answer; None when it did."""
    if payload["reason"] == "shutdown":
        return "shutdown", "the proxy is shutting down; send the request again"
    error = payload.get("error")
    if payload["reason"] == "error" or error is not None:
        error = error or {"type": "error", "message": "the answer failed"}
        return error["type"], error["message"]
    return None


def usage_fields(usage: dict[str, int]) -> dict[str, Any]:
    """The terminate's usage in OpenAI's shape, details included when the upstream reported them."""
    fields: dict[str, Any] = {name: usage[name] for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if "reasoning_tokens" in usage:
        fields["completion_tokens_details"] = {"reasoning_tokens": usage["reasoning_tokens"]}
    if "cached_tokens" in usage:
        fields["prompt_tokens_details"] = {"cached_tokens": usage["cached_tokens"]}
    return fields


def tool_call_piece(payload: dict[str, Any]) -> dict[str, Any]:
    """A `tool_call_delta` event as an entry of `delta.tool_calls`."""
    function: dict[str, Any] = {"arguments": payload["arguments"]}
    piece: dict[str, Any] = {"index": payload["index"]}
    if "id" in payload:
        piece["id"] = payload["id"]
        piece["type"] = "function"
    if "name" in payload:
        function["name"] = payload["name"]
    piece["function"] = function
    return piece


def tool_call_entry(payload: dict[str, Any]) -> dict[str, Any]:
    """A complete `tool_call` event as an entry of `message.tool_calls`."""
    return {"id": payload["id"], "type": "function",
            "function": {"name": payload["name"], "arguments": payload["arguments"]}}


class ChunkEncoder:
    """The SSE bytes of one streamed completion. The text chunk is built from prepared bytes: it is the
    hot path, one `orjson.dumps` of the text and a join per chunk, as the browser door's is."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._open = b',"finish_reason":null}]}\n\n'
        self.answered_by(model)

    def answered_by(self, model: str) -> None:
        """Name `model` in the chunks from now on: the one that answers, a fallback perhaps (issue 26)."""
        self._head["model"] = model
        self._delta_head = b"data: " + json_line(self._head)[:-1] + b',"choices":[{"index":0,"delta":'
        self._text_head = self._delta_head + b'{"content":'

    def text(self, text: str) -> bytes:
        return b"".join((self._text_head, json_line(text), b"}", self._open))

    def delta(self, fields: dict[str, Any]) -> bytes:
        return b"".join((self._delta_head, json_line(fields), self._open))

    def first(self) -> bytes:
        """The role chunk that opens the stream, as OpenAI's does."""
        return self.delta({"role": "assistant", "content": ""})

    def named(self, event: str, payload: dict[str, Any]) -> bytes | None:
        """A named relay event as a chunk; None for kinds the door does not carry."""
        if event == "tool_call_delta":
            return self.delta({"tool_calls": [tool_call_piece(payload)]})
        field = _DELTA_FIELDS.get(event)
        return self.delta({field: payload["text"]}) if field is not None else None

    def end(self, terminate: dict[str, Any], include_usage: bool) -> bytes:
        """The finish chunk, the usage chunk if asked for, and `[DONE]`."""
        choice = {"index": 0, "delta": {}, "finish_reason": finish_reason(terminate["reason"])}
        parts = [self._chunk([choice])]
        if include_usage and "usage" in terminate:
            parts.append(self._chunk([], usage=usage_fields(terminate["usage"])))
        parts.append(DONE)
        return b"".join(parts)

    def error(self, error_type: str, message: str) -> bytes:
        """The in-band error that ends a stream after its first chunk (no `[DONE]` follows)."""
        return b"data: " + json_line(error_body(502, error_type, message)) + b"\n\n"

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json_line({**self._head, "choices": choices, **extra}) + b"\n\n"


class CompletionBuilder:
    """The events of one answer gathered into a `chat.completion` object."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = {"id": completion_id, "object": "chat.completion", "created": created, "model": model}
        self._parts: dict[str, list[str]] = {"content": [], "reasoning_content": [], "refusal": []}
        self._tool_calls: list[dict[str, Any]] = []

    def add(self, payload: dict[str, Any], event: str | None) -> None:
        if event is None:
            self._parts["content"].append(payload["text"])
        elif event == "tool_call":
            self._tool_calls.append(tool_call_entry(payload))
        elif event in _DELTA_FIELDS:
            self._parts[_DELTA_FIELDS[event]].append(payload["text"])

    def completion(self, terminate: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._parts["content"]) or None}
        for field in ("reasoning_content", "refusal"):
            if self._parts[field]:
                message[field] = "".join(self._parts[field])
        if self._tool_calls:
            message["tool_calls"] = self._tool_calls
        elif message["content"] is None and "refusal" not in message:
            message["content"] = ""
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": finish_reason(terminate["reason"])}
        body: dict[str, Any] = {**self._head, "choices": [choice]}
        body["model"] = terminate.get("model") or body["model"]  # the one that answered, a fallback perhaps
        if "usage" in terminate:
            body["usage"] = usage_fields(terminate["usage"])
        return body
