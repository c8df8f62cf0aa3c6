"""Opt-in named events: the names a request may ask for, and the non-text deltas of one attempt
turned into them. Answer text never passes through here (it is the relay's hot path).

A request asks with `"events": [...]` (POST /chat) or `?events=a,b` (GET /stream); one that does not
ask gets exactly the events it got before these existed (README, "The event schema").
- `reasoning`: `{"text"}` per piece of thinking, unless the model is configured `reasoning: drop`;
- `refusal`: `{"text"}` per piece of a refusal; the terminate's reason is then `refusal`;
- `tool_call`: `{"index", "id", "name", "arguments"}` once per call, when it is complete: when the next
  call begins, or anything else arrives, or the answer ends. Its `arguments` must be valid JSON;
- `tool_call_delta`: each piece as it arrives (`index`, `arguments`, and `id`/`name` on the first);
- `reset`: `{"action": "reset", "reason", "model"}`: discard what was shown, the answer starts over
  (a mid-stream recovery by restart, proxy/relay/recovery.py; the relay sends it, not this module).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson

from llm_sse_proxy.proxy.deltas import Delta, ReasoningDelta, RefusalDelta, ToolCall, ToolCallDelta
from llm_sse_proxy.proxy.errors import BadRequest, InvalidToolCall, UpstreamMalformed
from llm_sse_proxy.proxy.relay.sse import tool_call_payload

EVENT_NAMES = ("reasoning", "refusal", "tool_call", "tool_call_delta", "reset")
TOOL_EVENTS = frozenset({"tool_call", "tool_call_delta"})

Named = tuple[str, dict[str, Any]]  # (event name, payload)


def parse_event_names(names: Iterable[str]) -> frozenset[str]:
    """The events a request asked for; an unknown name is a 400 that lists the known ones."""
    wanted = frozenset(name.strip() for name in names if name.strip())
    unknown = sorted(wanted.difference(EVENT_NAMES))
    if unknown:
        raise BadRequest(f"events: unknown event {unknown[0]!r} (known: {', '.join(EVENT_NAMES)})", param="events")
    return wanted


class ToolCallAssembler:
    """Joins the pieces of each tool call. Calls arrive one after another (OpenAI streams call 0's
    pieces, then call 1's), so a call is complete when another begins or the stream moves on."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []  # the complete calls' payloads, in order
        self._index: int | None = None
        self._id: str | None = None
        self._name: str | None = None
        self._arguments: list[str] = []
        self._done: set[int] = set()

    @property
    def open(self) -> bool:
        return self._index is not None

    def add(self, piece: ToolCallDelta) -> dict[str, Any] | None:
        """Take one piece; return the payload of the call it completed, if it began another."""
        completed = None
        if piece.index != self._index:
            if piece.index in self._done:
                raise UpstreamMalformed(f"the upstream went back to tool call {piece.index} after it ended")
            completed = self.close()
            self._index, self._id, self._name, self._arguments = piece.index, None, None, []
        self._id = self._id or piece.id
        self._name = self._name or piece.name
        if piece.arguments:
            self._arguments.append(piece.arguments)
        return completed

    def close(self) -> dict[str, Any] | None:
        """End the open call, if any; return its payload."""
        if self._index is None:
            return None
        index, self._index = self._index, None
        self._done.add(index)
        payload = tool_call_payload(index, _complete(index, self._id, self._name, "".join(self._arguments)))
        self.calls.append(payload)
        return payload


def _complete(index: int, id_: str | None, name: str | None, arguments: str) -> ToolCall:
    if not name:
        raise InvalidToolCall(f"the model's tool call {index} has no function name")
    # A call of a function without parameters: some servers send no argument text at all.
    arguments = arguments or "{}"
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        try:
            json.loads(arguments)  # what orjson refuses but JSON allows: lone surrogate escapes
        except ValueError:
            raise InvalidToolCall(
                f"the model's call of {name!r} has arguments that are not valid JSON, so it cannot be run"
            ) from None
    # Without an id a client cannot answer the call; the index names it uniquely in this answer.
    return ToolCall(id_ or f"call_{index}", name, arguments)


class Extras:
    """One attempt's non-text deltas, as the named events its request asked for.

    Built per attempt: a retry starts from nothing, since nothing of the failed attempt was sent.
    """

    def __init__(self, wanted: frozenset[str], *, show_reasoning: bool = True) -> None:
        self.details = bool(wanted)  # the terminate's newer fields go to requests that asked for events
        self._reasoning = show_reasoning and "reasoning" in wanted
        self._refusal = "refusal" in wanted
        self._pieces = "tool_call_delta" in wanted
        self._whole = "tool_call" in wanted
        self.calls = ToolCallAssembler() if wanted & TOOL_EVENTS else None
        self.open_call = False  # read on the text path: a plain attribute
        self.refused = False

    def named(self, delta: Delta) -> list[Named]:
        """The events for one non-text delta (none when the request did not ask for its kind)."""
        if isinstance(delta, ReasoningDelta):
            return [("reasoning", {"text": delta.text})] if self._reasoning and delta.text else []
        if isinstance(delta, ToolCallDelta):
            return self._tool_piece(delta)
        if isinstance(delta, RefusalDelta) and self._refusal and delta.text:
            self.refused = True
            return [*self.close_calls(), ("refusal", {"text": delta.text})]
        return []

    def close_calls(self) -> list[Named]:
        """The tool_call event of the open call, now complete (the stream moved on)."""
        self.open_call = False
        completed = self.calls.close() if self.calls is not None else None
        return [("tool_call", completed)] if completed is not None and self._whole else []

    def reason(self, upstream_reason: str) -> str:
        """OpenAI ends a streamed refusal with `stop`; a client that asked for refusals learns it was one."""
        return "refusal" if self.refused and upstream_reason == "stop" else upstream_reason

    def tool_calls(self) -> list[dict[str, Any]]:
        return self.calls.calls if self.calls is not None else []

    def _tool_piece(self, piece: ToolCallDelta) -> list[Named]:
        if self.calls is None:
            return []
        completed = self.calls.add(piece)
        self.open_call = True
        events: list[Named] = []
        if completed is not None and self._whole:
            events.append(("tool_call", completed))
        if self._pieces:
            events.append(("tool_call_delta", _piece_payload(piece)))
        return events


def _piece_payload(piece: ToolCallDelta) -> dict[str, Any]:
    payload: dict[str, Any] = {"index": piece.index}
    if piece.id is not None:
        payload["id"] = piece.id
    if piece.name is not None:
        payload["name"] = piece.name
    payload["arguments"] = piece.arguments
    return payload
