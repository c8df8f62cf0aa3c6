"""The border between upstreams and the browser.

An adapter turns one provider's wire format into these values; the proxy turns them into SSE.
Neither side sees the other's format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias

from pydantic import BaseModel

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A normalized chat request, already validated."""

    messages: Sequence[Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer. Adapters never yield an empty one."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The upstream's own end marker: the answer is complete."""

    reason: str
    usage: Usage | None = field(default=None)


Delta: TypeAlias = TextDelta | Finish


class Adapter(Protocol):
    """One upstream. `stream` yields text deltas, then exactly one Finish.

    It raises `proxy.errors.UpstreamError` subclasses; it must not end without a Finish.
    """

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]: ...


Sleep: TypeAlias = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """What the registry knows of an adapter: its options model and how to build it.

    `build(options, http=client_or_None, sleep=sleep)`; `http` is given only when `uses_http`,
    and the proxy owns its lifecycle.
    """

    options: type[BaseModel]
    build: Callable[..., Adapter]
    uses_http: bool = False
