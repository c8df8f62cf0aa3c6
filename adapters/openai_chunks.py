"""Decoding one `data:` payload of a chat-completions stream (wire-formats.md §1). Pure functions.

Besides `delta.content`, compatible servers stream other kinds in the delta, all carried:
- `reasoning_content` (DeepSeek, vLLM before 0.11) or `reasoning` (OpenRouter, vLLM, Ollama): thinking.
  Only the text: OpenRouter's `reasoning_details` (which may be encrypted) never leaves the adapter;
- `refusal` (OpenAI's structured refusals), and `tool_calls` pieces, which the proxy assembles;
- `content` as a list of parts (Mistral): its text parts are the text, its `thinking` parts reasoning.
Azure's content-filter annotations come as choices without a `delta`: they carry no text, only at
times the finish reason (`content_filter`) that ends the answer.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from llm_sse_proxy.adapters.upstream_http import RETRYABLE_STATUS, error_message, loads
from llm_sse_proxy.proxy.deltas import Delta, ReasoningDelta, RefusalDelta, ToolCallDelta, Usage
from llm_sse_proxy.proxy.errors import (
    ContentPolicyRejected, UpstreamError, UpstreamMalformed, UpstreamRejected, UpstreamUnavailable,
)

# OpenAI's code for a refused image prompt, and Azure's for its content filter (as an error, not a finish reason).
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter"})
# In-band error codes (or types) that refuse the request itself: asking again would fail again (issue 16).
REJECTION_CODES = CONTENT_POLICY_CODES | {"context_length_exceeded", "invalid_request_error", "insufficient_quota",
                                          "invalid_prompt"}


class Chunk(NamedTuple):  # one per upstream chunk: a tuple is built at half a frozen dataclass's cost
    text: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    done: bool = False
    extras: tuple[Delta, ...] = ()  # reasoning, refusal and tool-call pieces, in the order to yield them


def parse_chunk(data: str) -> Chunk:
    """One `data:` payload of a chat-completions stream."""
    if data.startswith("[DONE]"):
        return Chunk(done=True)
    try:
        obj = loads(data)
    except ValueError:
        raise UpstreamMalformed("the upstream sent a chunk that is not JSON") from None
    if not isinstance(obj, dict):
        raise UpstreamMalformed("the upstream sent a chunk that is not a JSON object")
    if obj.get("error"):
        raise _in_band_error(obj["error"])
    choices = obj.get("choices")
    if not isinstance(choices, list):
        raise UpstreamMalformed("the upstream sent a chunk without choices")
    usage = _usage(obj.get("usage"))
    if not choices:
        return Chunk(usage=usage)
    choice = choices[0]
    delta = choice.get("delta") if type(choice) is dict else None
    if type(delta) is dict:
        text = delta.get("content")
        if type(text) is str and len(delta) == 1:  # the plain-text chunk: nothing else to look at
            return Chunk(text, choice.get("finish_reason"), usage)
        return _rich(choice, delta, text, usage)
    if delta is None and type(choice) is dict:  # Azure's content-filter annotation: at most the reason that ends it
        return Chunk(None, choice.get("finish_reason"), usage)
    raise UpstreamMalformed("the upstream sent a choice that is not a JSON object with a delta object")


def _rich(choice: dict[str, Any], delta: dict[str, Any], text: Any, usage: Usage | None) -> Chunk:
    extras = _extras(delta)
    if type(text) is list:
        text, thinking = _parts(text)
        if thinking:
            extras = (ReasoningDelta(thinking), *extras)
    return Chunk(text if isinstance(text, str) else None, choice.get("finish_reason"), usage, False, extras)


def _extras(delta: dict[str, Any]) -> tuple[Delta, ...]:
    found: list[Delta] = []
    # vLLM sent both names during its rename: the same text, so one of them only.
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning and isinstance(reasoning, str):
        found.append(ReasoningDelta(reasoning))
    refusal = delta.get("refusal")
    if refusal and isinstance(refusal, str):
        found.append(RefusalDelta(refusal))
    calls = delta.get("tool_calls")
    if calls:
        found.extend(_tool_pieces(calls))
    return tuple(found)


def _tool_pieces(calls: Any) -> list[ToolCallDelta]:
    if not isinstance(calls, list):
        raise UpstreamMalformed("the upstream sent tool_calls that are not a list")
    pieces = []
    for position, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise UpstreamMalformed("the upstream sent a tool call without a function")
        index, id_, name, arguments = call.get("index", position), call.get("id"), function.get("name"), function.get("arguments")
        if not isinstance(index, int) or not _str_or_none(id_) or not _str_or_none(name):
            raise UpstreamMalformed("the upstream sent a tool call with a bad index, id or name")
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))  # an object: stringify it
        pieces.append(ToolCallDelta(index, id_ or None, name or None, arguments or ""))
    return pieces


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _parts(parts: list[Any]) -> tuple[str | None, str]:
    """Mistral's content parts: (the text parts joined, the thinking parts' text joined)."""
    text, thinking = [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif part.get("type") == "thinking" and isinstance(part.get("thinking"), list):
            thinking.extend(p["text"] for p in part["thinking"] if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "".join(text) or None, "".join(thinking)


def _usage(raw: Any) -> Usage | None:
    """Token counts, or None when absent or not counts (negative, fractional, booleans): the answer itself
    is still good, and nothing downstream must add a count that is not one (issue 16)."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not (_is_count(prompt) and _is_count(completion)):
        return None
    reasoning = _count(raw.get("completion_tokens_details"), "reasoning_tokens")
    cached = _count(raw.get("prompt_tokens_details"), "cached_tokens")
    return Usage(prompt, completion, reasoning, cached)


def _count(details: Any, name: str) -> int | None:
    value = details.get(name) if isinstance(details, dict) else None
    return value if _is_count(value) else None


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _in_band_error(error: Any) -> UpstreamError:
    # `{"error": {"message": ...}}`, or a bare string: the upstream's words, redacted by the adapter.
    message = error_message({"error": error}) or "the upstream reported an error mid-stream"
    if code := _rejection_code(error):  # a refusal of the request: the same request would fail again
        if code in CONTENT_POLICY_CODES:
            return ContentPolicyRejected(f"the upstream's content policy refused it: {message}")
        return UpstreamRejected(f"the upstream rejected the request ({code}): {message}")
    return UpstreamUnavailable(f"the upstream reported an error: {message}")


def _rejection_code(error: Any) -> str | None:
    """The code or type that makes an in-band error a rejection, or a 4xx status given as its code."""
    if not isinstance(error, dict):
        return None
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and value in REJECTION_CODES:
            return value
        if type(value) is int and 400 <= value < 500 and value not in RETRYABLE_STATUS:
            return str(value)
    return None
