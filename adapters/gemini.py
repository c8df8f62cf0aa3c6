"""Google's Gemini API, streamed (`models/{model}:streamGenerateContent?alt=sse`; wire-formats.md §4).

A plain httpx2 request: the official SDK (google-genai) runs on httpx, and the proxy stays on httpx2.
The key goes in the `x-goog-api-key` header, never in the URL, so no log line or error can carry it.

Every chunk is a whole `GenerateContentResponse` holding only the new parts. Thought parts (`thought:
true`, sent with `includeThoughts`) stream as reasoning, without their `thoughtSignature`; a
`functionCall` part is a whole call, its `args` object sent on as one JSON string. There is no end
sentinel: the chunk with `finishReason` is the last, and a close before it is a truncated answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx2
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llm_sse_proxy.adapters.event_stream import MAX_EVENT, event_deltas
from llm_sse_proxy.adapters.request_parts import data_url, tool_arguments
from llm_sse_proxy.adapters.upstream_http import BaseUrl, Redactor, error_message, loads, stream_deltas
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
from llm_sse_proxy.proxy.errors import UpstreamError, UpstreamMalformed, UpstreamRejected, UpstreamUnavailable

# Gemini's finish reasons in the proxy's terms; any other is passed on in lower case.
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "IMAGE_SAFETY"}
RETRYABLE_CODES = {408, 429, 500, 502, 503, 504}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


class GeminiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl = "https://generativelanguage.googleapis.com/v1beta"
    api_key: SecretStr
    model: str = Field(min_length=1)
    include_thoughts: bool = False  # thought summaries as reasoning deltas
    thinking_budget: int | None = Field(None, ge=-1)  # -1: dynamic; 0 turns thinking off where a model allows it
    default_headers: dict[str, str] = {}
    max_event_bytes: int = Field(MAX_EVENT, ge=1024)


class GeminiAdapter:
    def __init__(self, options: GeminiOptions, *, http: httpx2.AsyncClient) -> None:
        self.options = options
        self.http = http
        secret = options.api_key.get_secret_value()
        self.redact = Redactor([secret, *options.default_headers.values()])
        model = quote(options.model, safe="+=:@-._~")
        self._url = f"{options.base_url.rstrip('/')}/models/{model}:streamGenerateContent"
        self._headers = {**options.default_headers, "x-goog-api-key": secret, "content-type": "application/json"}

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body = orjson.dumps(request_body(request, self.options))
        sent = self.http.build_request("POST", self._url, params={"alt": "sse"}, headers=self._headers, content=body)
        return stream_deltas(self.http, sent, self._deltas, self.redact, retry_delay,
                             media_type="text/event-stream")

    def _deltas(self, body: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
        unfinished = "the upstream closed the stream before a finish reason"
        return event_deltas(body, AnswerState(), self.options.max_event_bytes, unfinished)


class AnswerState:
    """One streamed answer: how many tool calls so far, and the latest usage (converted at the end)."""

    __slots__ = ("calls", "usage")

    def __init__(self) -> None:
        self.calls = 0
        self.usage: Any = None  # the last usageMetadata seen

    def read(self, data: str) -> list[Delta]:
        """The deltas of one chunk's JSON. Pure but for this answer's state; lists, not generators: this
        runs once per chunk."""
        try:
            chunk = loads(data)
        except ValueError:
            raise UpstreamMalformed("the upstream sent a chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamMalformed("the upstream sent a chunk that is not a JSON object")
        if "error" in chunk and not chunk.get("candidates"):
            raise in_band_error(chunk)
        if (usage := chunk.get("usageMetadata")) is not None:
            self.usage = usage
        candidates = chunk.get("candidates")
        if not candidates:
            return self._blocked(chunk)
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise UpstreamMalformed("the upstream sent a candidate that is not a JSON object")
        content = candidate.get("content")
        deltas = self._parts(content.get("parts")) if isinstance(content, dict) else []
        if reason := candidate.get("finishReason"):
            deltas.append(Finish(self._reason(reason), usage_of(self.usage)))
        return deltas

    def _parts(self, parts: Any) -> list[Delta]:
        deltas: list[Delta] = []
        for part in parts or ():
            if text := part.get("text"):
                deltas.append(ReasoningDelta(text) if part.get("thought") else TextDelta(text))
            elif isinstance(call := part.get("functionCall"), dict):
                index, self.calls = self.calls, self.calls + 1
                arguments = orjson.dumps(call.get("args") or {}).decode()
                deltas.append(ToolCallDelta(index, call.get("id") or f"call_{index}", call.get("name"), arguments))
        return deltas

    def _blocked(self, chunk: dict[str, Any]) -> list[Delta]:
        """No candidates: a usage-only chunk, or a prompt blocked before any answer."""
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            return [Finish("content_filter", usage_of(self.usage))]
        return []

    def _reason(self, reason: str) -> str:
        if reason == "STOP" and self.calls:
            return "tool_calls"  # Gemini says STOP after a function call; clients expect tool_calls
        return "content_filter" if reason in FILTERED else FINISH_REASONS.get(reason, reason.lower())


def usage_of(raw: Any) -> Usage | None:
    """Gemini counts thoughts apart from candidates; the proxy's completion_tokens includes them."""
    if not isinstance(raw, dict) or not isinstance(raw.get("promptTokenCount"), int):
        return None
    thoughts = raw.get("thoughtsTokenCount")
    completion = (raw.get("candidatesTokenCount") or 0) + (thoughts or 0)
    return Usage(raw["promptTokenCount"], completion, reasoning_tokens=thoughts, cached_tokens=raw.get("cachedContentTokenCount"))


def in_band_error(chunk: dict[str, Any]) -> UpstreamError:
    """An error chunk after the 200 (observed, not documented): its `code` is an HTTP status."""
    error = chunk.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    text = f"the upstream reported an error: {error_message(chunk) or 'no message'}"
    return UpstreamUnavailable(text) if code in RETRYABLE_CODES else UpstreamRejected(text)


def retry_delay(body: Any, headers: httpx2.Headers) -> float | None:
    """Gemini sends no Retry-After: the delay is a `RetryInfo` entry in `error.details` ("34.4s")."""
    if isinstance(body, list) and body:
        body = body[0]  # Vertex wraps the error in a list
    error = body.get("error") if isinstance(body, dict) else None
    for detail in error.get("details") or () if isinstance(error, dict) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            return float(match.group(1)) if match else None
    return None


def request_body(request: ChatRequest, options: GeminiOptions) -> dict[str, Any]:
    """The generateContent body for a chat request. Pure."""
    body: dict[str, Any] = {"contents": _contents(request.messages)}
    if system := "\n\n".join(m.text for m in request.messages if m.role in ("system", "developer")):
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = {name: value for name, value in (("temperature", request.temperature), ("topP", request.top_p),
              ("maxOutputTokens", request.max_tokens), ("stopSequences", list(request.stop or ()) or None),
              ("presencePenalty", request.presence_penalty), ("frequencyPenalty", request.frequency_penalty),
              ("seed", request.seed)) if value is not None}
    thinking = {"includeThoughts": True} if options.include_thoughts else {}
    if options.thinking_budget is not None:
        thinking["thinkingBudget"] = options.thinking_budget
    if thinking:
        config["thinkingConfig"] = thinking
    if config:
        body["generationConfig"] = config
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in request.tools]}]
    if request.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _tool_choice(request.tool_choice)}
    return body


def _contents(messages: Any) -> list[dict[str, Any]]:
    names = {call.id: call.name for m in messages for call in m.tool_calls}  # a tool result names its function
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        role = "model" if message.role == "assistant" else "user"
        parts = _parts(message, names)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts  # parallel calls' results go back in one turn
        elif parts:
            contents.append({"role": role, "parts": parts})
    return contents


def _parts(message: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    if message.role == "tool":
        name = names.get(message.tool_call_id or "", message.tool_call_id or "")
        return [{"functionResponse": {"name": name, "response": _response(message.text)}}]
    content = [message.content] if isinstance(message.content, str) else message.content
    parts = [_image(p) if isinstance(p, ImagePart) else {"text": p if isinstance(p, str) else p.text} for p in content]
    parts = [p for p in parts if p.get("text") != ""]
    for call in message.tool_calls:
        parts.append({"functionCall": {"name": call.name, "args": tool_arguments(call.arguments, "Gemini")}})
    return parts


def _response(text: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except ValueError:
        value = text
    return value if isinstance(value, dict) else {"result": value}  # the API takes an object only


def _image(part: ImagePart) -> dict[str, Any]:
    if inline := data_url(part.url):
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    return {"fileData": {"fileUri": part.url}}


def _declaration(tool: Any) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if tool.parameters:
        declaration["parameters"] = dict(tool.parameters)
    return declaration


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str):
        return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice, "AUTO")}
    return {"mode": "ANY", "allowedFunctionNames": [choice.get("name")]}


def build(options: GeminiOptions, *, http: httpx2.AsyncClient | None = None, **_: Any) -> GeminiAdapter:
    assert http is not None, "the proxy gives each Gemini upstream its own client"
    return GeminiAdapter(options, http=http)


SPEC = AdapterSpec(options=GeminiOptions, build=build, uses_http=True,
                   takes=frozenset({"presence_penalty", "frequency_penalty", "seed"}))
