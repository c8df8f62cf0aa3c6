"""Ollama's native chat API (`POST /api/chat`), streamed as NDJSON, not SSE (wire-formats.md §5.1).

A plain httpx2 request: the `ollama` package runs on httpx. Native rather than Ollama's `/v1`: it
carries `think` levels and `done_reason`. Thinking arrives in `message.thinking`, tool calls whole in
`message.tool_calls` (arguments as an object, sent on as a JSON string), and the last object has
`done: true` with the eval counts. A mid-stream failure is an `{"error": ...}` line under a 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Literal

import httpx2
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llm_sse_proxy.adapters.ndjson import MAX_LINE, LineDecoder
from llm_sse_proxy.adapters.request_parts import data_url, tool_arguments
from llm_sse_proxy.adapters.upstream_http import BaseUrl, Redactor, loads, stream_deltas
from llm_sse_proxy.proxy.deltas import (
    AdapterSpec,
    MalformedChunk,
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
from llm_sse_proxy.proxy.errors import UpstreamMalformed, UpstreamRejected, UpstreamTruncated, UpstreamUnavailable

NDJSON = "application/x-ndjson"  # what Ollama streams; anything else is not its answer

# `load` and `unload` end requests that generate nothing (an empty messages list), never a chat.
DONE_REASONS = {"stop": "stop", "length": "length"}


class OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl = "http://127.0.0.1:11434"  # without /api
    api_key: SecretStr | None = None  # Ollama's cloud, or a server behind an authenticating proxy
    model: str = Field(min_length=1)
    think: bool | Literal["low", "medium", "high", "max"] | None = None  # None: the model's default
    keep_alive: str | None = None  # e.g. "30m": how long the server keeps the model loaded
    default_headers: dict[str, str] = {}
    max_line_bytes: int = Field(MAX_LINE, ge=1024)  # a longer line ends the stream with an error


class OllamaAdapter:
    def __init__(self, options: OllamaOptions, *, http: httpx2.AsyncClient) -> None:
        self.options = options
        self.http = http
        secret = options.api_key.get_secret_value() if options.api_key else ""
        self.redact = Redactor([secret, *options.default_headers.values()])
        self._url = options.base_url.rstrip("/") + "/api/chat"
        self._headers = {**options.default_headers, "content-type": "application/json"}
        if secret:
            self._headers["authorization"] = f"Bearer {secret}"

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body = orjson.dumps(request_body(request, self.options))
        sent = self.http.build_request("POST", self._url, headers=self._headers, content=body)
        return stream_deltas(self.http, sent, self._deltas, self.redact, media_type=NDJSON)

    async def _deltas(self, body: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
        decoder = LineDecoder(self.options.max_line_bytes)
        chat = ChatState()
        async for raw in body:
            for line in decoder.feed(raw):
                for delta in _read(chat, line):
                    yield delta
                    if isinstance(delta, Finish):
                        return
        if rest := decoder.rest():  # a last object without its newline
            for delta in _read(chat, rest):
                yield delta
                if isinstance(delta, Finish):
                    return
        raise UpstreamTruncated("the upstream closed the stream before done")


def _read(chat: ChatState, line: bytes) -> Iterable[Delta]:
    try:
        return chat.read(line)
    except UpstreamMalformed as exc:  # one bad line: the proxy decides (faults.on_malformed_chunk)
        return (MalformedChunk(exc.message),)


class ChatState:
    """One streamed chat: how many tool calls so far."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def read(self, line: bytes) -> Iterator[Delta]:
        """The deltas of one NDJSON line. Pure but for this chat's state."""
        try:
            chunk = loads(line)
        except ValueError:
            raise UpstreamMalformed("the upstream sent a line that is not JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamMalformed("the upstream sent a line that is not a JSON object")
        if error := chunk.get("error"):
            raise UpstreamUnavailable(f"the upstream reported an error: {error}")
        return self._chunk(chunk)

    def _chunk(self, chunk: dict[str, Any]) -> Iterator[Delta]:
        message = chunk.get("message")
        if isinstance(message, dict):
            if thinking := message.get("thinking"):
                yield ReasoningDelta(thinking)
            if content := message.get("content"):
                yield TextDelta(content)
            for call in message.get("tool_calls") or ():
                yield self._call(call)
        if chunk.get("done") is True:
            yield Finish(self._reason(chunk.get("done_reason")), usage_of(chunk))

    def _call(self, call: Any) -> ToolCallDelta:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise UpstreamMalformed("the upstream sent a tool call without a function")
        index, self.calls = self.calls, self.calls + 1
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
        return ToolCallDelta(index, id=call.get("id") or f"call_{index}", name=function.get("name"), arguments=text)

    def _reason(self, reason: Any) -> str:
        if self.calls and reason in (None, "stop"):
            return "tool_calls"  # Ollama says stop after a tool call (its own /v1 rewrites it the same way)
        return DONE_REASONS.get(reason, reason) if isinstance(reason, str) else "stop"


def usage_of(chunk: dict[str, Any]) -> Usage | None:
    prompt, completion = chunk.get("prompt_eval_count"), chunk.get("eval_count")
    if isinstance(prompt, int) and isinstance(completion, int):
        return Usage(prompt, completion)
    return None


def request_body(request: ChatRequest, options: OllamaOptions) -> dict[str, Any]:
    """The /api/chat body for a chat request. Pure."""
    names = {call.id: call.name for m in request.messages for call in m.tool_calls}  # a tool result names its tool
    body: dict[str, Any] = {"model": options.model, "messages": [_message(m, names) for m in request.messages],
                            "stream": True}
    if options.think is not None:
        body["think"] = options.think
    if options.keep_alive is not None:
        body["keep_alive"] = options.keep_alive
    settings = {name: value for name, value in (("temperature", request.temperature), ("top_p", request.top_p),
                ("num_predict", request.max_tokens), ("stop", list(request.stop or ()) or None),
                ("presence_penalty", request.presence_penalty), ("frequency_penalty", request.frequency_penalty),
                ("seed", request.seed)) if value is not None}
    if settings:
        body["options"] = settings
    if request.tools:
        body["tools"] = [{"type": "function", "function": _function(tool)} for tool in request.tools]
    return body  # no tool_choice: Ollama has none; the model decides


def _message(message: Message, names: dict[str, str]) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.text}
    if message.role == "tool" and message.tool_call_id in names:
        out["tool_name"] = names[message.tool_call_id]
    if not isinstance(message.content, str) and (images := [_image(p) for p in message.content
                                                              if isinstance(p, ImagePart)]):
        out["images"] = images
    if message.tool_calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": tool_arguments(c.arguments, "Ollama")}}
                             for c in message.tool_calls]
    return out


def _image(part: ImagePart) -> str:
    if not (inline := data_url(part.url)):
        raise UpstreamRejected("Ollama takes images only as base64 data: URLs, not links")
    return inline[1]


def _function(tool: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters or {"type": "object"})}
    if tool.description:
        function["description"] = tool.description
    return function


def build(options: OllamaOptions, *, http: httpx2.AsyncClient | None = None, **_: Any) -> OllamaAdapter:
    assert http is not None, "the proxy gives each Ollama upstream its own client"
    return OllamaAdapter(options, http=http)


SPEC = AdapterSpec(options=OllamaOptions, build=build, uses_http=True,
                   takes=frozenset({"presence_penalty", "frequency_penalty", "seed"}))
