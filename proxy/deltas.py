"""The border between upstreams and the browser.

An adapter turns one provider's wire format into these values; the proxy turns them into SSE.
Neither side sees the other's format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from pydantic import BaseModel

Role = Literal["system", "developer", "user", "assistant", "tool"]
# How a target continues a trailing assistant message (issue 12); the adapter spells it in its dialect.
ContinueWith = Literal["trailing_assistant", "prefix_flag", "continue_final_message"]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL (`https:` or a `data:` URL), as OpenAI's `image_url` content part carries it."""

    url: str
    detail: str | None = None


ContentPart: TypeAlias = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete call the model made; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is its JSON Schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. `content` is plain text or a sequence of parts; an assistant turn may carry
    `tool_calls`, and a `tool` turn answers the call named by `tool_call_id`."""

    role: Role
    content: str | tuple[ContentPart, ...]
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The text of the turn: the content, or its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A normalized chat request, already validated."""

    messages: Sequence[Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] | None = None
    # Issue 15: OpenAI's sampling and format fields; an adapter whose API lacks one refuses it (`takes`).
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None  # OpenAI's shape: {"type": ..., "json_schema": {...}}
    tools: tuple[Tool, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None  # "auto" | "none" | "required" | {"name": ...}
    # Set: the last message is assistant text the model is to continue, not answer (mid-stream recovery).
    continue_with: ContinueWith | None = None
    # Issue 26: more of OpenAI's fields (docs/openai-fields.md says what each adapter does with each).
    user: str | None = None  # the client's end user, for the upstream's abuse checks
    parallel_tool_calls: bool | None = None  # only False is kept: True is every API's default
    logit_bias: Mapping[str, int] | None = None
    # Fields that tune cost, latency or style but not what is answered (reasoning_effort, service_tier…):
    # an adapter whose API has them passes them on by their OpenAI names; the others leave them.
    tuning: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None = None  # included in completion_tokens, when the upstream reports it
    cached_tokens: int | None = None  # included in prompt_tokens, when the upstream reports it

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer. Adapters never yield an empty one."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's thinking (or its reasoning summary). Never signatures or encrypted blobs."""

    text: str


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """A piece of a refusal the model streams instead of an answer (OpenAI's `delta.refusal`)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the tool call at `index`: its first piece carries `id` and `name`, and `arguments`
    arrive as pieces of JSON text to be concatenated. An upstream that sends whole calls yields one
    piece with everything. The proxy assembles the pieces; adapters do not."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class MalformedChunk:
    """One upstream chunk the adapter could not read; the proxy skips it or ends the stream (issue 12)."""

    message: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The upstream's own end marker: the answer is complete."""

    reason: str
    usage: Usage | None = field(default=None)


Delta: TypeAlias = TextDelta | ReasoningDelta | RefusalDelta | ToolCallDelta | MalformedChunk | Finish


class Adapter(Protocol):
    """One upstream. `stream` yields deltas (text, reasoning, refusal, tool-call pieces), then exactly one Finish.

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
    takes: frozenset[str] = frozenset()  # the OPTIONAL_FIELDS its API has; a request with another is a 400


# ChatRequest's fields that not every API has (issue 15): each adapter's spec lists those it passes on.
OPTIONAL_FIELDS = ("presence_penalty", "frequency_penalty", "seed", "response_format", "parallel_tool_calls",
                   "logit_bias")
