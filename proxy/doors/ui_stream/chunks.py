"""The relay's events as the AI SDK's UI message stream (`ai`'s ui-message-chunks.ts). Pure, no I/O.

Invariants (what `DefaultChatTransport` and `readUIMessageStream` of `ai` 6 read):
- every chunk is one `data:` line of JSON and a blank line; the stream ends with `data: [DONE]`;
- the first frame opens the message: `start` (its `messageId`) and `start-step`;
- text and reasoning come in parts: `*-start` with a part id, `*-delta`s, `*-end`; a part is closed
  before a part of another kind opens (the UIMessage keeps them in the order they were streamed);
- a tool call is `tool-input-start` (its id and name), `tool-input-delta`s, then `tool-input-available`
  with the parsed input once the call is complete;
- a finished answer ends with `finish-step`, then `finish` with the finish reason and `messageMetadata`
  (`model`: the model that answered, `usage` in the SDK's names, `recovered` after a recovery);
- a failed answer ends with `error` (`errorText`: the message the proxy's other doors give), a stopped one
  with `abort`; both then `[DONE]`;
- a `reset` (a recovery that restarts the answer) closes the step and sends `start` with a new
  `messageId`: the SDK's readers that restart a message on a new id (`readUIMessageStream`, and
  `useChat` when it resumes) then hold one whole answer (docs/ui-message-stream.md).

An encoder belongs to one stream: the part ids and the open parts are its state.
"""

from __future__ import annotations

import json
from typing import Any

from llm_sse_proxy.proxy.relay.sse import json_line

DONE = b"data: [DONE]\n\n"
HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
# The relay's named events this door asks for: all it can show.
EVENTS = frozenset({"reasoning", "refusal", "tool_call", "tool_call_delta", "reset"})
_FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool-calls",
                   "content_filter": "content-filter", "refusal": "content-filter"}
_USAGE_NAMES = {"prompt_tokens": "inputTokens", "completion_tokens": "outputTokens", "total_tokens": "totalTokens",
                "reasoning_tokens": "reasoningTokens", "cached_tokens": "cachedInputTokens"}


def chunk(value: dict[str, Any]) -> bytes:
    return b"data: " + json_line(value) + b"\n\n"


def finish_reason(reason: str) -> str:
    """The relay's reason in the SDK's `FinishReason` terms."""
    return _FINISH_REASONS.get(reason, "other")


def usage_metadata(usage: dict[str, int]) -> dict[str, int]:
    """The terminate's usage under the names of the SDK's `LanguageModelUsage`."""
    return {_USAGE_NAMES[name]: count for name, count in usage.items() if name in _USAGE_NAMES}


def failure(terminate: dict[str, Any]) -> str | None:
    """The message of a terminate that did not finish the answer; None when it did."""
    if terminate["reason"] == "shutdown":
        return "the proxy is shutting down; send the request again"
    error = terminate.get("error")
    if terminate["reason"] == "error" or error is not None:
        return str((error or {}).get("message") or "the answer failed")
    return None


def error_frame(message: str) -> bytes:
    """A stream that cannot go on (a replay whose start is no longer kept): `error`, then `[DONE]`."""
    return chunk({"type": "error", "errorText": message}) + DONE


def parse_input(arguments: str) -> Any:
    """A complete call's arguments (the relay checked they are JSON) as the tool's input."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


class UIStreamEncoder:
    """The UI message stream of one answer, one frame (bytes, one or more chunks) per relay event."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self._started = False
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", part id)
        self._parts = 0
        self._resets = 0
        self._calls: dict[int, _Call] = {}
        self._text_head = b""

    def frame(self, payload: dict[str, Any], event: str | None = None) -> bytes:
        """The bytes for one relay event (its payload and its name, None for answer text)."""
        if event is None and "text" in payload:
            if self._open is not None and self._open[0] == "text":  # the hot path: one more piece of text
                return b"".join((self._text_head, json_line(payload["text"]), b"}\n\n"))
            return self._head() + self._part("text") + self.frame(payload)
        if event is None:
            return self._head() + self._end(payload)
        return self._head() + self._named(event, payload)

    def framed(self, event_id: bytes, payload: dict[str, Any], event: str | None = None) -> bytes:
        """`frame` with the resumable writer's signature; the protocol has no event ids."""
        return self.frame(payload, event)

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return chunk({"type": "start", "messageId": self.message_id}) + chunk({"type": "start-step"})

    def _part(self, kind: str) -> bytes:
        closed = self._close()
        self._parts += 1
        part_id = f"{kind}-{self._parts}"
        self._open = (kind, part_id)
        if kind == "text":
            self._text_head = b'data: {"type":"text-delta","id":"' + part_id.encode() + b'","delta":'
        return closed + chunk({"type": f"{kind}-start", "id": part_id})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        kind, part_id = self._open
        self._open = None
        return chunk({"type": f"{kind}-end", "id": part_id})

    def _named(self, event: str, payload: dict[str, Any]) -> bytes:
        if event in ("reasoning", "refusal"):  # a refusal is what the model says: text the user reads
            kind = "reasoning" if event == "reasoning" else "text"
            opened = b"" if self._open is not None and self._open[0] == kind else self._part(kind)
            assert self._open is not None
            return opened + chunk({"type": f"{kind}-delta", "id": self._open[1], "delta": payload["text"]})
        if event == "tool_call_delta":
            return self._close() + self._call(payload).piece(payload)
        if event == "tool_call":
            return self._close() + self._call(payload).complete(payload)
        if event == "reset":
            return self._reset()
        return b""

    def _call(self, payload: dict[str, Any]) -> _Call:
        index = payload["index"]
        if index not in self._calls:
            # The relay names a call without an id `call_<index>` (proxy/relay/rich_events.py): the same here.
            self._calls[index] = _Call(payload.get("id") or f"call_{index}")
        return self._calls[index]

    def _reset(self) -> bytes:
        self._resets += 1
        self._calls.clear()
        self.message_id = f"{self.message_id.rsplit('~', 1)[0]}~{self._resets}"
        return (self._close() + chunk({"type": "finish-step"}) + chunk({"type": "start", "messageId": self.message_id})
                + chunk({"type": "start-step"}))

    def _end(self, terminate: dict[str, Any]) -> bytes:
        closed = self._close()
        if terminate["reason"] == "cancelled":
            return closed + chunk({"type": "abort", "reason": terminate.get("code", "cancelled")}) + DONE
        message = failure(terminate)
        if message is not None:
            return closed + error_frame(message)
        metadata: dict[str, Any] = {"model": terminate.get("model")}
        if "usage" in terminate:
            metadata["usage"] = usage_metadata(terminate["usage"])
        if "recovered" in terminate:
            metadata["recovered"] = terminate["recovered"]
        end = {"type": "finish", "finishReason": finish_reason(terminate["reason"]), "messageMetadata": metadata}
        return closed + chunk({"type": "finish-step"}) + chunk(end) + DONE


class _Call:
    """One tool call's progress: its start is sent once its name is known, its input once it is complete."""

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.name: str | None = None
        self.held: list[str] = []  # argument pieces that came before the name
        self.done = False

    def piece(self, payload: dict[str, Any]) -> bytes:
        out = b""
        if self.name is None and payload.get("name"):
            self.name = payload["name"]
            out = chunk({"type": "tool-input-start", "toolCallId": self.id, "toolName": self.name})
            out += b"".join(self._delta(text) for text in self.held)
            self.held = []
        if payload["arguments"]:
            if self.name is None:
                self.held.append(payload["arguments"])
            else:
                out += self._delta(payload["arguments"])
        return out

    def complete(self, payload: dict[str, Any]) -> bytes:
        if self.done:
            return b""
        self.done = True
        out = b""
        if self.name is None:
            self.name = payload["name"]
            out = chunk({"type": "tool-input-start", "toolCallId": self.id, "toolName": self.name})
        return out + chunk({"type": "tool-input-available", "toolCallId": self.id, "toolName": self.name,
                            "input": parse_input(payload["arguments"])})

    def _delta(self, text: str) -> bytes:
        return chunk({"type": "tool-input-delta", "toolCallId": self.id, "inputTextDelta": text})
