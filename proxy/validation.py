"""Turn untrusted request bodies and query strings into a ChatRequest. Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from proxy.deltas import ChatRequest, Message
from proxy.errors import BadRequest

_Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str


class _ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    messages: list[_MessageBody] = Field(min_length=1)
    model: _Name | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None


@dataclass(frozen=True, slots=True)
class ParsedChat:
    request: ChatRequest
    model: str | None


def parse_chat_body(body: bytes) -> ParsedChat:
    """Validate a POST /chat body; raise BadRequest with a message a person can act on."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError, absurd nesting.
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        chat = _ChatBody.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        raise BadRequest(_describe(exc)) from None
    stop = [chat.stop] if isinstance(chat.stop, str) else chat.stop
    _check_unicode([(f"messages.{i}.content", m.content) for i, m in enumerate(chat.messages)]
                   + [("stop", s) for s in stop or ()] + [("model", chat.model or "")])
    request = ChatRequest(
        messages=tuple(Message(m.role, m.content) for m in chat.messages),
        temperature=chat.temperature,
        top_p=chat.top_p,
        max_tokens=chat.max_tokens,
        stop=tuple(stop) if stop is not None else None,
    )
    return ParsedChat(request, chat.model)


def parse_stream_query(query: Mapping[str, str], default_prompt: str) -> ParsedChat:
    """Validate GET /stream's `prompt`, `system` and `model` parameters."""
    prompt = query.get("prompt") or default_prompt
    messages = [Message("user", prompt)]
    if system := query.get("system"):
        messages.insert(0, Message("system", system))
    model = query.get("model") or None
    if model is not None and len(model) > 200:
        raise BadRequest("model: the name is too long")
    return ParsedChat(ChatRequest(messages=tuple(messages)), model)


def _check_unicode(fields: list[tuple[str, str]]) -> None:
    """JSON's `\\ud800` escapes decode to lone surrogates, which no upstream request can encode (issue 16)."""
    for name, value in fields:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{name}: a lone UTF-16 surrogate (an escape like \\ud800 without its pair) is not text"
                             ) from None


def _describe(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return "the body is nested too deeply"
    error: Any = exc.errors(include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{field}: {error['msg']}"
