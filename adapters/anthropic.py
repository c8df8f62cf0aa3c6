"""Anthropic's Messages API, streamed (`POST /v1/messages`, `"stream": true`; wire-formats.md §3).

A plain httpx2 request on the proxy's client, not the official SDK: the SDK (2.x, on httpx2) would only
build the request and raise the status errors, for about 250 us more CPU per request and the same cost
per chunk (bench/anthropic_sdk_cost.py, docs/configuration.md, "Native Anthropic, Gemini and Ollama"). The body is decoded here either way.

Thinking streams as reasoning; its signature never leaves this module. Server-side tools (web search)
run at Anthropic, so their blocks are not tool calls for the client and are skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx2
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llm_sse_proxy.adapters.event_stream import MAX_EVENT, event_deltas
from llm_sse_proxy.adapters.request_parts import data_url, tool_arguments
from llm_sse_proxy.adapters.upstream_http import BaseUrl, Redactor, loads, stream_deltas
from llm_sse_proxy.proxy.deltas import (
    AdapterSpec,
    ChatRequest,
    Delta,
    Finish,
    ImagePart,
    Message,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from llm_sse_proxy.proxy.errors import (
    UpstreamError, UpstreamMalformed, UpstreamRejected, UpstreamTruncated, UpstreamUnavailable,
)

# Anthropic's stop reasons in the proxy's terms (the OpenAI names); any other passes through as it is.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Error types in an `error` event that a retry may cure (before the first token only, like every retry).
RETRYABLE_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class AnthropicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl = "https://api.anthropic.com"  # without /v1
    api_key: SecretStr
    model: str = Field(min_length=1)
    max_tokens: int = Field(4096, ge=1)  # the API requires one; used when the request has none
    thinking_budget: int | None = Field(None, ge=1024)  # tokens of extended thinking; off when unset
    anthropic_version: str = "2023-06-01"
    default_headers: dict[str, str] = {}  # e.g. anthropic-beta
    max_event_bytes: int = Field(MAX_EVENT, ge=1024)


class AnthropicAdapter:
    def __init__(self, options: AnthropicOptions, *, http: httpx2.AsyncClient) -> None:
        self.options = options
        self.http = http
        secret = options.api_key.get_secret_value()
        self.redact = Redactor([secret, *options.default_headers.values()])
        self._url = options.base_url.rstrip("/") + "/v1/messages"
        self._headers = {
            **options.default_headers,
            "x-api-key": secret,
            "anthropic-version": options.anthropic_version,
            "accept": "text/event-stream",
        }

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body = request_body(request, self.options)
        sent = self.http.build_request("POST", self._url, headers=self._headers, content=orjson.dumps(body))
        sent.headers["content-type"] = "application/json"
        return stream_deltas(self.http, sent, self._deltas, self.redact, media_type="text/event-stream")

    async def _deltas(self, body: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
        message = MessageState()
        try:
            async for delta in event_deltas(body, message, self.options.max_event_bytes,
                                            "the upstream closed the stream before message_stop"):
                yield delta
        except UpstreamError as exc:
            exc.usage = usage_of(message.usage)  # message_start's counts: a cut attempt is billed too (issue 12)
            raise


class MessageState:
    """One streamed message: which content blocks are client tool calls, the stop reason, the usage so far."""

    __slots__ = ("tool_calls", "stop_reason", "usage")

    def __init__(self) -> None:
        self.tool_calls: dict[int, int] = {}  # content-block index -> tool-call index
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}

    def read(self, data: str) -> Iterable[Delta]:
        """The deltas of one event's JSON. Pure but for this message's state."""
        try:
            event = loads(data)
        except ValueError:
            raise UpstreamMalformed("the upstream sent an event that is not JSON") from None
        if not isinstance(event, dict):
            raise UpstreamMalformed("the upstream sent an event that is not a JSON object")
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":  # the hot path: answer text
                return (TextDelta(text),) if (text := delta.get("text")) else ()
            return self._delta(event)
        if kind == "content_block_start":
            return self._start(event)
        if kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_start":
            self._message_start(event)
        elif kind == "message_stop":
            return (self._finish(),)
        elif kind == "error":
            raise in_band_error(event.get("error"))
        return ()  # ping, content_block_stop, and event types added later

    def _start(self, event: dict[str, Any]) -> Iterator[Delta]:
        index, block = event.get("index"), event.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            raise UpstreamMalformed("the upstream sent a content block without an index")
        kind = block.get("type")
        if kind == "tool_use":
            position = self.tool_calls[index] = len(self.tool_calls)
            yield ToolCallDelta(position, id=block.get("id"), name=block.get("name"))
        elif kind == "text" and block.get("text"):
            yield TextDelta(block["text"])
        elif kind == "thinking" and block.get("thinking"):
            yield ReasoningDelta(block["thinking"])

    def _delta(self, event: dict[str, Any]) -> Iterator[Delta]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise UpstreamMalformed("the upstream sent a content_block_delta without a delta")
        kind = delta.get("type")
        if kind == "text_delta":
            if text := delta.get("text"):
                yield TextDelta(text)
        elif kind == "thinking_delta":
            if thinking := delta.get("thinking"):
                yield ReasoningDelta(thinking)
        elif kind == "input_json_delta":
            position = self.tool_calls.get(event.get("index"))  # type: ignore[arg-type]
            if position is not None and (piece := delta.get("partial_json")):
                yield ToolCallDelta(position, arguments=piece)
        # signature_delta and citations_delta: never to the browser (signatures) or not carried yet

    def _message_start(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        if isinstance(message, dict) and isinstance(message.get("usage"), dict):
            self.usage.update(message["usage"])

    def _message_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            self.stop_reason = delta["stop_reason"]
        if isinstance(event.get("usage"), dict):
            # Cumulative counts (wire-formats.md §3.4): the later value replaces the earlier one.
            self.usage.update((k, v) for k, v in event["usage"].items() if v is not None)

    def _finish(self) -> Finish:
        if self.stop_reason is None:
            raise UpstreamTruncated("the upstream ended the message without a stop reason")
        return Finish(STOP_REASONS.get(self.stop_reason, self.stop_reason), usage_of(self.usage))


def usage_of(raw: dict[str, Any]) -> Usage | None:
    """Anthropic's usage: input_tokens excludes the cache; the proxy's prompt_tokens includes it."""
    counts = {k: v for k, v in raw.items() if isinstance(v, int)}
    if "input_tokens" not in counts or "output_tokens" not in counts:
        return None
    read = counts.get("cache_read_input_tokens", 0)
    prompt = counts["input_tokens"] + counts.get("cache_creation_input_tokens", 0) + read
    cached = read if "cache_read_input_tokens" in counts else None
    return Usage(prompt, counts["output_tokens"], cached_tokens=cached)


def in_band_error(error: Any) -> UpstreamError:
    """An `error` event after the 200: `overloaded_error` is Anthropic's 529, worth a retry."""
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = f"the upstream reported an error: {kind or 'error'}: {message or 'no message'}"
    return UpstreamUnavailable(text) if kind in RETRYABLE_ERRORS else UpstreamRejected(text)


def request_body(request: ChatRequest, options: AnthropicOptions) -> dict[str, Any]:
    """The Messages API body for a chat request. Pure."""
    max_tokens = request.max_tokens or options.max_tokens
    body: dict[str, Any] = {"model": options.model, "max_tokens": max_tokens, "stream": True,
                            "messages": _messages(request.messages)}
    if system := "\n\n".join(m.text for m in request.messages if m.role in ("system", "developer")):
        body["system"] = system  # top level: the API has no system role in messages
    if options.thinking_budget:
        # max_tokens counts the thinking too, and thinking allows no temperature or top_p change.
        body["thinking"] = {"type": "enabled", "budget_tokens": options.thinking_budget}
        body["max_tokens"] = options.thinking_budget + max_tokens
    else:
        body.update({k: v for k, v in (("temperature", request.temperature), ("top_p", request.top_p)) if v is not None})
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [{"name": t.name, "input_schema": dict(t.parameters or {"type": "object", "properties": {}}),
                          **({"description": t.description} if t.description else {})} for t in request.tools]
    if request.tool_choice is not None or request.parallel_tool_calls is False:
        body["tool_choice"] = _tool_choice(request.tool_choice or "auto")
        if request.parallel_tool_calls is False and request.tool_choice != "none":  # "none" takes no flag
            body["tool_choice"]["disable_parallel_tool_use"] = True
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    return body


def _messages(messages: Any) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        role = "assistant" if message.role == "assistant" else "user"  # tool results go back as user turns
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks  # consecutive tool results answer one assistant turn
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}]
    parts = [message.content] if isinstance(message.content, str) else message.content
    blocks = [_image(p) if isinstance(p, ImagePart) else {"type": "text", "text": p if isinstance(p, str) else p.text}
              for p in parts]
    blocks = [b for b in blocks if b.get("text") != ""]  # the API refuses empty text blocks
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_arguments(call.arguments, "Anthropic")})
    return blocks


def _image(part: ImagePart) -> dict[str, Any]:
    if inline := data_url(part.url):
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str):
        return {"type": {"required": "any"}.get(choice, choice)}  # auto, none, any
    return {"type": "tool", "name": choice.get("name")}


def build(options: AnthropicOptions, *, http: httpx2.AsyncClient | None = None, **_: Any) -> AnthropicAdapter:
    assert http is not None, "the proxy gives each Anthropic upstream its own client"
    return AnthropicAdapter(options, http=http)


SPEC = AdapterSpec(options=AnthropicOptions, build=build, uses_http=True, takes=frozenset({"parallel_tool_calls"}))
