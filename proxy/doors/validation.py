"""Turn untrusted request bodies and query strings into a ChatRequest. Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from llm_sse_proxy.proxy.deltas import (
    OPTIONAL_FIELDS, ChatRequest, ContentPart, ImagePart, Message, TextPart, Tool, ToolCall,
)
from llm_sse_proxy.proxy.doors.body_checks import MAX_JSON_DEPTH, TOO_DEEP, check_depth, check_unicode, text_depth
from llm_sse_proxy.proxy.config.errors import close_match
from llm_sse_proxy.proxy.errors import BadRequest
from llm_sse_proxy.proxy.relay.rich_events import parse_event_names

_Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_FunctionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _TextPartBody(_Body):
    type: Literal["text"]
    text: str


class _ImageURL(_Body):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class _ImagePartBody(_Body):
    type: Literal["image_url"]
    image_url: _ImageURL


_Part = Annotated[_TextPartBody | _ImagePartBody, Field(discriminator="type")]


class _FunctionCallBody(_Body):
    name: _FunctionName
    arguments: str


class _ToolCallBody(_Body):
    """A call the assistant made, sent back in the history (OpenAI's shape)."""

    id: str = Field(min_length=1)
    type: Literal["function"]
    function: _FunctionCallBody


class _MessageBody(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = Field(None, validate_default=False)
    tool_calls: list[_ToolCallBody] | None = Field(None, min_length=1)
    tool_call_id: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _fits_its_role(self) -> _MessageBody:
        # Each message is "<field>: <problem>", so _describe names the field.
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: Field required (only an assistant message with tool_calls may omit it)")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls: only an assistant message carries tool_calls")
        if (self.tool_call_id is not None) != (self.role == "tool"):
            raise ValueError("tool_call_id: a tool message needs one, and only a tool message has one")
        if self.role != "user" and isinstance(self.content, list):
            if any(isinstance(part, _ImagePartBody) for part in self.content):
                raise ValueError("content: image parts are allowed in user messages only")
        return self


class _FunctionBody(_Body):
    name: _FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema, passed through as it is


class _ToolBody(_Body):
    type: Literal["function"]
    function: _FunctionBody


class _FunctionChoice(_Body):
    name: _FunctionName


class _NamedToolChoice(_Body):
    type: Literal["function"]
    function: _FunctionChoice


class _StreamOptions(_Body):
    include_usage: bool | None = None


class _JSONSchemaFormat(_Body):
    name: _FunctionName
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class _ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> _ResponseFormat:
        if (self.json_schema is not None) != (self.type == "json_schema"):
            raise ValueError("json_schema: goes with type json_schema, and only with it")
        return self


# reasoning_effort, service_tier, verbosity: a word, passed on as it is (each API has its own list, and it grows).
_Word = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]


class _Prediction(_Body):
    type: Literal["content"]
    content: str | list[_TextPartBody]


# Passed on as they are to the APIs that have them (ChatRequest.tuning); none changes what is answered.
_TUNING = ("reasoning_effort", "service_tier", "verbosity", "prompt_cache_key", "safety_identifier", "prediction")


class _ChatBody(_Body):
    """One body for both doors: POST /chat and POST /v1/chat/completions (OpenAI's request fields)."""

    messages: list[_MessageBody] = Field(min_length=1)
    model: _Name | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    response_format: _ResponseFormat | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1)
    tools: list[_ToolBody] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | _NamedToolChoice | None = None
    stream: bool | None = None  # POST /chat always streams
    stream_options: _StreamOptions | None = None
    events: list[str] | None = None
    # What SDKs and frameworks send besides (issue 26; docs/openai-fields.md has what becomes of each).
    user: str | None = Field(None, max_length=256)
    parallel_tool_calls: bool | None = None
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = Field(None, max_length=300)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    modalities: list[Literal["text", "audio"]] | None = None
    metadata: dict[str, Annotated[str, StringConstraints(max_length=512)]] | None = Field(None, max_length=16)
    store: bool | None = None
    reasoning_effort: _Word | None = None
    service_tier: _Word | None = None
    verbosity: _Word | None = None
    prompt_cache_key: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)
    prediction: _Prediction | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _ChatBody:
        if self.n is not None and self.n > 1:
            raise ValueError("n: one stream carries one answer; send n > 1 as separate requests")
        if self.logprobs or self.top_logprobs:
            field = "logprobs" if self.logprobs else "top_logprobs"
            raise ValueError(f"{field}: the proxy does not relay token log probabilities; leave it out")
        if self.modalities is not None and "audio" in self.modalities:
            raise ValueError("modalities: the proxy relays text answers only; leave out \"audio\"")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("max_completion_tokens: send it or max_tokens, not both")
        if self.tool_choice is not None and not self.tools:
            raise ValueError("tool_choice: needs tools")
        if isinstance(self.tool_choice, _NamedToolChoice) and self.tools:
            if self.tool_choice.function.name not in {tool.function.name for tool in self.tools}:
                raise ValueError("tool_choice: names a function that is not in tools")
        return self


@dataclass(frozen=True, slots=True)
class ParsedChat:
    request: ChatRequest
    model: str | None
    events: frozenset[str] = frozenset()  # the named events the client asked for
    stream: bool = False  # read by the OpenAI-compatible door only; POST /chat always streams
    include_usage: bool = False  # stream_options.include_usage, the same


def parse_chat_body(body: bytes) -> ParsedChat:
    """Validate a POST /chat body; raise BadRequest with a message a person can act on."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError, absurd nesting.
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    if b"\\u" in body:  # only an escape can make a lone surrogate: valid UTF-8 has none
        check_unicode(data)
    return _plain_chat(data) or _validated_chat(data)


# The body nearly every client sends: messages of a role and a text, perhaps a model and `stream`.
_PLAIN_KEYS = frozenset({"messages", "model", "stream"})
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})  # a tool message needs its call's id


def _plain_chat(data: dict[str, Any]) -> ParsedChat | None:
    """The plain body, read without pydantic; None for anything else (even a plain body's error), which
    `_validated_chat` reads (or refuses) as it always did: the same ParsedChat either way (tests/test_validation.py)."""
    messages, model, stream = data.get("messages"), data.get("model"), data.get("stream")
    if not _PLAIN_KEYS.issuperset(data) or type(messages) is not list or not messages:
        return None
    if not (model is None or type(model) is str and 0 < len(model) <= 200) or not (stream is None or type(stream) is bool):
        return None
    turns = []
    for message in messages:
        if type(message) is not dict or len(message) != 2:
            return None
        role, content = message.get("role"), message.get("content")
        if type(role) is not str or role not in _PLAIN_ROLES or type(content) is not str:  # a list is unhashable
            return None
        turns.append(Message(role, content))
    return ParsedChat(ChatRequest(messages=tuple(turns)), model, frozenset(), bool(stream), False)


def _validated_chat(data: dict[str, Any]) -> ParsedChat:
    check_depth(data)
    if "prompt" in data and "messages" not in data:
        raise BadRequest('prompt: a chat body takes messages, not a prompt: {"messages": [{"role": "user", '
                         '"content": "…"}]} (GET /stream is the route that takes ?prompt=)', param="prompt")
    try:
        chat = _ChatBody.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        raise field_error(_describe(exc)) from None
    for i, message in enumerate(chat.messages):
        for j, call in enumerate(message.tool_calls or ()):
            if text_depth(call.function.arguments) > MAX_JSON_DEPTH:
                raise field_error(f"messages.{i}.tool_calls.{j}.function.arguments: {TOO_DEEP}")
    stop = [chat.stop] if isinstance(chat.stop, str) else chat.stop
    request = ChatRequest(
        messages=tuple(_message(m) for m in chat.messages),
        temperature=chat.temperature,
        top_p=chat.top_p,
        max_tokens=chat.max_tokens or chat.max_completion_tokens,
        stop=tuple(stop) if stop is not None else None,
        tools=tuple(Tool(t.function.name, t.function.description, t.function.parameters) for t in chat.tools or ()),
        tool_choice=_tool_choice(chat.tool_choice),
        presence_penalty=chat.presence_penalty,
        frequency_penalty=chat.frequency_penalty,
        seed=chat.seed,
        response_format=chat.response_format.model_dump(by_alias=True, exclude_none=True)
        if chat.response_format is not None else None,
        user=chat.user,
        parallel_tool_calls=False if chat.parallel_tool_calls is False and chat.tools else None,
        logit_bias=chat.logit_bias or None,
        tuning=_tuning(chat),
    )
    usage = bool(chat.stream_options and chat.stream_options.include_usage)
    return ParsedChat(request, chat.model, parse_event_names(chat.events or ()), bool(chat.stream), usage)


def _tuning(chat: _ChatBody) -> dict[str, Any]:
    values = {name: getattr(chat, name) for name in _TUNING}
    if chat.prediction is not None:
        values["prediction"] = chat.prediction.model_dump(exclude_none=True)
    return {name: value for name, value in values.items() if value is not None}


def check_supported(request: ChatRequest, model: str, takes: frozenset[str]) -> None:
    """A 400 for a field the model's API does not have, rather than an answer made without it."""
    for name in OPTIONAL_FIELDS:
        if name not in takes and getattr(request, name) is not None:
            raise BadRequest(f"{name}: the model {model!r} cannot take it; leave it out or use another model",
                             param=name)


def parse_stream_query(query: Mapping[str, str], default_prompt: str) -> ParsedChat:
    """Validate GET /stream's `prompt`, `system`, `model` and `events` parameters."""
    prompt = query.get("prompt") or default_prompt
    messages = [Message("user", prompt)]
    if system := query.get("system"):
        messages.insert(0, Message("system", system))
    model = query.get("model") or None
    if model is not None and len(model) > 200:
        raise BadRequest("model: the name is too long", param="model")
    events = parse_event_names(query.get("events", "").split(","))
    return ParsedChat(ChatRequest(messages=tuple(messages)), model, events)


def field_error(message: str) -> BadRequest:
    """A 400 for a message "<field>: <problem>", naming the field as its `param` (OpenAI's error field)."""
    field, sep, _ = message.partition(": ")
    named = sep and field != "body" and " " not in field
    return BadRequest(message, param=field if named else None)


def _message(body: _MessageBody) -> Message:
    content: str | tuple[ContentPart, ...]
    if body.content is None:
        content = ""
    elif isinstance(body.content, str):
        content = body.content
    else:
        content = tuple(_part(part) for part in body.content)
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in body.tool_calls or ())
    return Message(body.role, content, tool_calls=calls, tool_call_id=body.tool_call_id)


def _part(part: _TextPartBody | _ImagePartBody) -> ContentPart:
    if isinstance(part, _TextPartBody):
        return TextPart(part.text)
    return ImagePart(part.image_url.url, part.image_url.detail)


def _tool_choice(choice: str | _NamedToolChoice | None) -> str | dict[str, str] | None:
    if isinstance(choice, _NamedToolChoice):
        return {"name": choice.function.name}
    return choice


def _unknown_field(loc: tuple[Any, ...]) -> str:
    """Pydantic's "Extra inputs are not permitted", as the config loader says it: with a did-you-mean."""
    model: type[_Body] | None = _ChatBody if len(loc) == 1 else None
    if len(loc) == 3 and loc[0] == "messages":
        model = _MessageBody
    close = close_match(str(loc[-1]), model.model_fields) if model is not None else None
    if close is not None:
        return f"unknown field; did you mean {close!r}?"
    return "unknown field (docs/openai-fields.md lists the fields taken)"


def _describe(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return "the body is nested too deeply"
    error: Any = exc.errors(include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{field}: {_unknown_field(error['loc'])}"
    if error["type"] == "value_error":  # our own checks: "<field>: <problem>"
        message = str(error["ctx"]["error"])
        return f"{field}.{message}" if field else message
    return f"{field or 'body'}: {error['msg']}"
