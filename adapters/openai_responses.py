"""OpenAI's Responses API, streamed (`POST /responses`, `"stream": true`), the only API where OpenAI's
reasoning models stream their reasoning summaries.

A plain httpx2 request on the proxy's client, as the native adapters send theirs (adapters/upstream_http.py):
the body is decoded here, event by event, in the shapes of the official SDK's stream types
(`openai/types/responses/`). The chat request goes as Responses input items: system and developer
messages as `instructions`, user and assistant turns as messages, earlier tool calls as `function_call`
items and their results as `function_call_output`. `store: false`: nothing is kept at OpenAI, and no
reasoning item is ever sent back (a chat request carries none), so each turn reasons afresh.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

import httpx2
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llm_sse_proxy.adapters.event_stream import MAX_EVENT, event_deltas
from llm_sse_proxy.adapters.upstream_http import BaseUrl, Redactor, loads, stream_deltas
from llm_sse_proxy.proxy.deltas import (
    AdapterSpec, ChatRequest, Delta, Finish, ImagePart, Message, ReasoningDelta, RefusalDelta, TextDelta,
    ToolCallDelta, Usage,
)
from llm_sse_proxy.proxy.errors import (
    ContentPolicyRejected, UpstreamError, UpstreamMalformed, UpstreamRejected, UpstreamUnavailable,
)

# Codes of an in-band error that the same request would meet again: not worth a retry.
REJECTION_CODES = frozenset({"context_length_exceeded", "invalid_request_error", "invalid_prompt",
                             "insufficient_quota", "invalid_api_key", "model_not_found"})
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter"})
# Why a response ended `incomplete`, in the proxy's finish reasons.
INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl = "https://api.openai.com/v1"
    api_key: SecretStr
    model: str = Field(min_length=1)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    reasoning_summary: Literal["auto", "concise", "detailed"] | None = None  # summaries stream as reasoning
    default_headers: dict[str, str] = {}  # e.g. OpenAI-Organization, or a gateway's own key
    max_event_bytes: int = Field(MAX_EVENT, ge=1024)


class ResponsesAdapter:
    def __init__(self, options: ResponsesOptions, *, http: httpx2.AsyncClient) -> None:
        self.options = options
        self.http = http
        secret = options.api_key.get_secret_value()
        self.redact = Redactor([secret, *options.default_headers.values()])
        self._url = options.base_url.rstrip("/") + "/responses"
        self._headers = {**options.default_headers, "authorization": f"Bearer {secret}",
                         "accept": "text/event-stream", "content-type": "application/json"}

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        sent = self.http.build_request("POST", self._url, headers=self._headers,
                                       content=orjson.dumps(request_body(request, self.options)))
        return stream_deltas(self.http, sent, self._deltas, self.redact, media_type="text/event-stream")

    def _deltas(self, body: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
        unfinished = "the upstream closed the stream before response.completed"
        return event_deltas(body, ResponseState(), self.options.max_event_bytes, unfinished)


class ResponseState:
    """One streamed response: which output items are function calls (as tool-call indexes)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}  # output_index -> tool-call index

    def read(self, data: str) -> Iterable[Delta]:
        """The deltas of one event's JSON. Pure but for this response's state."""
        try:
            event = loads(data)
        except ValueError:
            raise UpstreamMalformed("the upstream sent an event that is not JSON") from None
        if not isinstance(event, dict):
            raise UpstreamMalformed("the upstream sent an event that is not a JSON object")
        kind = event.get("type")
        if kind == "response.output_text.delta":  # the hot path: answer text
            return (TextDelta(text),) if isinstance(text := event.get("delta"), str) and text else ()
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return (ReasoningDelta(text),) if isinstance(text := event.get("delta"), str) and text else ()
        if kind == "response.function_call_arguments.delta":
            return self._arguments(event)
        return self._other(kind, event)

    def _other(self, kind: Any, event: dict[str, Any]) -> Iterable[Delta]:
        if kind == "response.output_item.added":
            return self._item(event)
        if kind == "response.reasoning_summary_part.added" and event.get("summary_index"):
            return (ReasoningDelta("\n\n"),)  # summary parts are paragraphs: keep them apart
        if kind == "response.refusal.delta":
            return (RefusalDelta(text),) if isinstance(text := event.get("delta"), str) and text else ()
        if kind in ("response.completed", "response.incomplete"):
            return (self._finish(event.get("response")),)
        if kind == "response.failed":
            response = event.get("response")
            raise in_band_error(response.get("error") if isinstance(response, dict) else None)
        if kind == "error":
            raise in_band_error(event.get("error", event))
        return ()  # created, in_progress, the *.done events, and event types added later

    def _item(self, event: dict[str, Any]) -> Iterable[Delta]:
        item, position = event.get("item"), event.get("output_index")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return ()
        if not isinstance(position, int):
            raise UpstreamMalformed("the upstream sent a function call without an output_index")
        index = self.calls[position] = len(self.calls)
        arguments = item.get("arguments") if isinstance(item.get("arguments"), str) else ""
        return (ToolCallDelta(index, id=item.get("call_id"), name=item.get("name"), arguments=arguments),)

    def _arguments(self, event: dict[str, Any]) -> Iterable[Delta]:
        index = self.calls.get(event.get("output_index"))  # type: ignore[arg-type]
        piece = event.get("delta")
        if index is None or not isinstance(piece, str) or not piece:
            return ()
        return (ToolCallDelta(index, arguments=piece),)

    def _finish(self, response: Any) -> Finish:
        if not isinstance(response, dict):
            raise UpstreamMalformed("the upstream ended the response without its object")
        details = response.get("incomplete_details")
        if response.get("status") == "incomplete" and isinstance(details, dict):
            reason = INCOMPLETE_REASONS.get(details.get("reason"), "length")  # type: ignore[arg-type]
        else:
            reason = "tool_calls" if self.calls else "stop"
        return Finish(reason, usage_of(response.get("usage")))


def usage_of(raw: Any) -> Usage | None:
    """The Responses usage: input and output tokens, with the cached and reasoning tokens they include."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("input_tokens"), raw.get("output_tokens")
    if not (_is_count(prompt) and _is_count(completion)):
        return None
    return Usage(prompt, completion, _count(raw.get("output_tokens_details"), "reasoning_tokens"),
                 _count(raw.get("input_tokens_details"), "cached_tokens"))


def _count(details: Any, name: str) -> int | None:
    value = details.get(name) if isinstance(details, dict) else None
    return value if _is_count(value) else None


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def in_band_error(error: Any) -> UpstreamError:
    """An `error` event, or a `response.failed` response's error: a rejection when its code says the same
    request would fail again, else worth a retry (before the first token, like every retry)."""
    code = (error.get("code") or error.get("type")) if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = f"the upstream reported an error: {code or 'error'}: {message or 'no message'}"
    if code in CONTENT_POLICY_CODES:
        return ContentPolicyRejected(text)
    return UpstreamRejected(text) if code in REJECTION_CODES else UpstreamUnavailable(text)


def request_body(request: ChatRequest, options: ResponsesOptions) -> dict[str, Any]:
    """The Responses API body for a chat request. Pure."""
    if request.stop:
        raise UpstreamRejected("the Responses API has no stop sequences; leave `stop` out for this model")
    body: dict[str, Any] = {"model": options.model, "input": input_items(request.messages), "stream": True,
                            "store": False}
    if instructions := "\n\n".join(m.text for m in request.messages if m.role in ("system", "developer")):
        body["instructions"] = instructions
    fields = (("max_output_tokens", request.max_tokens), ("temperature", request.temperature),
              ("top_p", request.top_p))
    body.update({name: value for name, value in fields if value is not None})
    if options.reasoning_effort or options.reasoning_summary:
        body["reasoning"] = {k: v for k, v in (("effort", options.reasoning_effort),
                                               ("summary", options.reasoning_summary)) if v is not None}
    if request.tools:
        body["tools"] = [{"type": "function", "name": t.name, "description": t.description,
                          "parameters": dict(t.parameters or {"type": "object", "properties": {}}), "strict": False}
                         for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = choice if isinstance(choice, str) else {"type": "function", "name": choice.get("name")}
    if request.response_format is not None:
        body["text"] = {"format": text_format(request.response_format)}
    return body


def input_items(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The conversation as input items; system and developer messages go in `instructions` instead."""
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            items.append({"type": "function_call_output", "call_id": message.tool_call_id, "output": message.text})
        elif message.role == "user":
            items.append({"role": "user", "content": _user_content(message)})
        elif message.role == "assistant":
            if message.text:
                items.append({"role": "assistant", "content": message.text})
            items += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
                      for c in message.tool_calls]
    return items


def _user_content(message: Message) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    return [{"type": "input_image", "image_url": p.url, "detail": p.detail or "auto"} if isinstance(p, ImagePart)
            else {"type": "input_text", "text": p.text} for p in message.content]


def text_format(response_format: Any) -> dict[str, Any]:
    """Chat's `response_format` as the Responses `text.format`: the JSON schema's fields one level up."""
    schema = response_format.get("json_schema")
    if response_format.get("type") == "json_schema" and isinstance(schema, dict):
        return {"type": "json_schema", **schema}
    return {"type": response_format.get("type", "text")}


def build(options: ResponsesOptions, *, http: httpx2.AsyncClient | None = None, **_: Any) -> ResponsesAdapter:
    assert http is not None, "the proxy gives each Responses upstream its own client"
    return ResponsesAdapter(options, http=http)


SPEC = AdapterSpec(options=ResponsesOptions, build=build, uses_http=True, takes=frozenset({"response_format"}))
