"""A Messages API body (`POST /v1/messages`) turned into the proxy's chat request. Pure: no I/O.

What maps: `model`, `messages` (text, image, `tool_use` and `tool_result` blocks), `system`, `max_tokens`,
`temperature`, `top_p`, `stop_sequences`, `tools` (client tools with an `input_schema`), `tool_choice`,
`thinking` and `stream`. `metadata` and `cache_control` are accepted and not passed on (they change no
answer). Anything else is a 400 that names the field, rather than an answer made without it.
Thinking blocks sent back in the history are dropped: their signatures are for Anthropic's servers only,
and the model behind this door may be any.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from llm_sse_proxy.proxy.deltas import ChatRequest, ContentPart, ImagePart, Message, TextPart, Tool, ToolCall
from llm_sse_proxy.proxy.doors.validation import ParsedChat
from llm_sse_proxy.proxy.errors import BadRequest

_Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Cached(_Body):
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint: accepted, not passed on


class _Text(_Cached):
    type: Literal["text"]
    text: str
    citations: list[Any] | None = None


class _Base64(_Body):
    type: Literal["base64"]
    media_type: str = Field(min_length=1)
    data: str = Field(min_length=1)


class _Url(_Body):
    type: Literal["url"]
    url: str = Field(min_length=1)


class _Image(_Cached):
    type: Literal["image"]
    source: Annotated[_Base64 | _Url, Field(discriminator="type")]


class _ToolUse(_Cached):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: _ToolName
    input: dict[str, Any]
    caller: None = None  # what the SDK's own blocks carry when sent back as they came
    toolset_name: None = None


class _ToolResult(_Cached):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[_Text] = ""
    is_error: bool | None = None


class _Thinking(_Body):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class _RedactedThinking(_Body):
    type: Literal["redacted_thinking"]
    data: str


_Block = Annotated[_Text | _Image | _ToolUse | _ToolResult | _Thinking | _RedactedThinking, Field(discriminator="type")]


class _Message(_Body):
    role: Literal["user", "assistant"]
    content: str | list[_Block]

    @model_validator(mode="after")
    def _fits_its_role(self) -> _Message:
        if isinstance(self.content, list):
            kinds = {block.type for block in self.content}
            if self.role == "user" and kinds & {"tool_use", "thinking", "redacted_thinking"}:
                raise ValueError("content: tool_use and thinking blocks belong to assistant messages")
            if self.role == "assistant" and kinds & {"tool_result", "image"}:
                raise ValueError("content: tool_result and image blocks belong to user messages")
        return self


class _Tool(_Cached):
    name: _ToolName
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None  # server tools (web search...) run at Anthropic only


class _ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: _ToolName | None = None
    disable_parallel_tool_use: Literal[False] | None = None  # true cannot be honoured by every model

    @model_validator(mode="after")
    def _named(self) -> _ToolChoice:
        if (self.name is not None) != (self.type == "tool"):
            raise ValueError("name: goes with type tool, and only with it")
        return self


class _ThinkingConfig(_Body):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=1024)
    display: Literal["summarized", "omitted"] | None = None


class _MessagesBody(_Body):
    model: _Name
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[_Text] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    stop_sequences: list[str] | None = None
    tools: list[_Tool] | None = Field(None, max_length=128)
    tool_choice: _ToolChoice | None = None
    thinking: _ThinkingConfig | None = None
    stream: bool | None = None
    metadata: dict[str, Any] | None = None  # user_id for Anthropic's abuse checks: accepted, not passed on

    @model_validator(mode="after")
    def _consistent(self) -> _MessagesBody:
        if self.tool_choice is not None and self.tool_choice.type != "none" and not self.tools:
            raise ValueError("tool_choice: needs tools")
        if self.tool_choice is not None and self.tool_choice.name is not None and self.tools:
            if self.tool_choice.name not in {tool.name for tool in self.tools}:
                raise ValueError("tool_choice: names a tool that is not in tools")
        return self


@dataclass(frozen=True, slots=True)
class ParsedMessages:
    """A Messages request: the chat, and what the door reads besides (thinking shown or not)."""

    chat: ParsedChat
    thinking: bool


def parse_messages_body(body: bytes) -> ParsedMessages:
    """Validate a `POST /v1/messages` body; raise BadRequest naming the field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    if unknown := sorted(data.keys() - _MessagesBody.model_fields.keys()):
        raise BadRequest(f"{', '.join(unknown)}: not supported by this proxy; leave {_them(unknown)} out")
    try:
        parsed = _MessagesBody.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        raise BadRequest(_describe(exc)) from None
    return _converted(parsed)


def _converted(body: _MessagesBody) -> ParsedMessages:
    messages: list[Message] = []
    if body.system:
        messages.append(Message("system", body.system if isinstance(body.system, str) else _joined(body.system)))
    for turn in body.messages:
        messages += _turn(turn)
    thinking = body.thinking is not None and body.thinking.type != "disabled"
    request = ChatRequest(
        messages=tuple(messages), temperature=body.temperature, top_p=body.top_p, max_tokens=body.max_tokens,
        stop=tuple(body.stop_sequences) if body.stop_sequences else None,
        tools=tuple(Tool(t.name, t.description, t.input_schema) for t in body.tools or ()),
        tool_choice=_tool_choice(body.tool_choice))
    return ParsedMessages(ParsedChat(request, body.model, stream=bool(body.stream)), thinking)


def _turn(turn: _Message) -> list[Message]:
    """One Anthropic turn as the proxy's messages: a user turn's tool results become tool messages first."""
    if isinstance(turn.content, str):
        return [Message(turn.role, turn.content)]
    if turn.role == "assistant":
        text = _joined([b for b in turn.content if isinstance(b, _Text)])
        calls = tuple(ToolCall(b.id, b.name, json.dumps(b.input)) for b in turn.content if isinstance(b, _ToolUse))
        return [Message("assistant", text, tool_calls=calls)]
    results = [Message("tool", _result_text(b), tool_call_id=b.tool_use_id)
               for b in turn.content if isinstance(b, _ToolResult)]
    parts: list[ContentPart] = [_part(b) for b in turn.content if isinstance(b, (_Text, _Image))]
    return results + ([Message("user", tuple(parts))] if parts else [])


def _part(block: _Text | _Image) -> ContentPart:
    if isinstance(block, _Text):
        return TextPart(block.text)
    source = block.source
    if isinstance(source, _Url):
        return ImagePart(source.url)
    return ImagePart(f"data:{source.media_type};base64,{source.data}")


def _result_text(block: _ToolResult) -> str:
    text = block.content if isinstance(block.content, str) else _joined(block.content)
    return f"Error: {text}" if block.is_error else text


def _joined(blocks: list[_Text]) -> str:
    return "".join(block.text for block in blocks)


def _tool_choice(choice: _ToolChoice | None) -> str | dict[str, str] | None:
    if choice is None:
        return None
    if choice.type == "tool":
        assert choice.name is not None
        return {"name": choice.name}
    return {"any": "required"}.get(choice.type, choice.type)


def _them(fields: list[str]) -> str:
    return "it" if len(fields) == 1 else "them"


_BRANCH = re.compile(r"^(str|.*\[.*\])$")  # pydantic's names of union branches in an error's place


def _describe(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return "the body is nested too deeply"
    # The deepest error: a union's first branch ("content: not a string") says least.
    error: Any = max(exc.errors(include_input=False), key=lambda e: len(e["loc"]))
    field = ".".join(str(part) for part in error["loc"] if not _BRANCH.match(str(part)))
    if error["type"] == "value_error":
        message = str(error["ctx"]["error"])
        return f"{field}.{message}" if field else message
    if error["type"] == "extra_forbidden":
        return f"{field}: not supported by this proxy; leave it out"
    return f"{field or 'body'}: {error['msg']}"
