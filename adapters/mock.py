"""The offline mock: a deterministic reply streamed like a real model, with scripted failures.

It uses no network. It records every request it was asked, so tests and demos can check them. It
can script what reasoning models and tool-using models stream: `thinking` (reasoning before the
reply), `tool_calls` (calls after the reply, their arguments in pieces) and `refusal` (instead of it).
Asked to continue an assistant message that begins its reply (mid-stream recovery, issue 12), it
streams the rest of the reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from llm_sse_proxy.proxy.deltas import (
    OPTIONAL_FIELDS,
    AdapterSpec,
    ChatRequest,
    Delta,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    Sleep,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from llm_sse_proxy.proxy.errors import UpstreamRejected, UpstreamUnavailable

DEFAULT_REPLY = (
    "Server-Sent Events let a server push a stream of text to the browser over one plain HTTP "
    "response. This reply comes from llm-sse-proxy's offline mock, one small chunk at a time, "
    "so your page can be built and tested without a key or a network."
)


class MockToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arguments: str = "{}"  # the JSON text the "model" writes, streamed in pieces as it is (valid or not)


class MockOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reply: str = DEFAULT_REPLY
    thinking: str = ""  # streamed as reasoning before the reply
    tool_calls: list[MockToolCall] = []  # streamed after the reply; the finish reason is then tool_calls
    refusal: str = ""  # streamed instead of the reply
    echo: bool = Field(False, description="reply with the last user message instead")
    chunk_chars: int = Field(6, ge=1)
    chunk_delay_ms: float = Field(30, ge=0)
    first_token_delay_ms: float = Field(0, ge=0)
    finish_reason: str = "stop"
    fail_before_first_token: bool = False
    fail_after_chunks: int | None = Field(None, ge=0)
    fail_continuations: bool = True  # false: a continuation of the answer (a recovery) is not failed again
    fail_kind: Literal["unavailable", "rejected"] = "unavailable"
    fail_message: str = "the mock upstream failed, as scripted"


class MockAdapter:
    def __init__(self, options: MockOptions, *, sleep: Sleep = anyio.sleep) -> None:
        self.options = options
        self.sleep = sleep
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        opts = self.options
        if opts.first_token_delay_ms:
            await self.sleep(opts.first_token_delay_ms / 1000)
        if opts.fail_before_first_token:
            raise self._failure()
        pieces = self._pieces(request)
        limit = request.max_tokens
        texts = 0
        for index, piece in enumerate(pieces):
            if isinstance(piece, TextDelta):
                if texts == opts.fail_after_chunks and (opts.fail_continuations or request.continue_with is None):
                    raise self._failure()
                if limit is not None and texts >= limit:
                    yield Finish("length", _usage(request, texts))
                    return
                texts += 1
            if index and opts.chunk_delay_ms:
                await self.sleep(opts.chunk_delay_ms / 1000)
            yield piece
        reason = "tool_calls" if opts.tool_calls and opts.finish_reason == "stop" else opts.finish_reason
        yield Finish(reason, _usage(request, texts))

    def _pieces(self, request: ChatRequest) -> list[Delta]:
        """Everything the "model" streams before its finish, in order."""
        size = self.options.chunk_chars
        pieces: list[Delta] = [ReasoningDelta(p) for p in split_reply(self.options.thinking, size)]
        if self.options.refusal:
            return pieces + [RefusalDelta(p) for p in split_reply(self.options.refusal, size)]
        pieces += [TextDelta(p) for p in split_reply(self._reply(request), size)]
        for index, call in enumerate(self.options.tool_calls):
            pieces.append(ToolCallDelta(index, f"call_mock_{index}", call.name))
            pieces += [ToolCallDelta(index, arguments=p) for p in split_reply(call.arguments, size)]
        return pieces

    def _reply(self, request: ChatRequest) -> str:
        reply = self.options.reply
        if self.options.echo:
            users = [m.text for m in request.messages if m.role == "user"]
            reply = users[-1] if users else reply
        prefill = request.messages[-1].text if request.continue_with is not None else None
        return reply[len(prefill):] if prefill is not None and reply.startswith(prefill) else reply

    def _failure(self) -> Exception:
        if self.options.fail_kind == "rejected":
            return UpstreamRejected(self.options.fail_message)
        return UpstreamUnavailable(self.options.fail_message)


def split_reply(text: str, size: int) -> list[str]:
    """Fixed-size chunks of code points; never an empty one."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def _usage(request: ChatRequest, completion_chunks: int) -> Usage:
    prompt = sum(len(m.text.split()) for m in request.messages)
    return Usage(prompt_tokens=prompt, completion_tokens=completion_chunks)


def build(options: MockOptions, *, http: object = None, sleep: Sleep = anyio.sleep) -> MockAdapter:
    return MockAdapter(options, sleep=sleep)


SPEC = AdapterSpec(options=MockOptions, build=build, takes=frozenset(OPTIONAL_FIELDS))  # it records them all
