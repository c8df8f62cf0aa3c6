"""Adapters driven on their own, without the proxy: build one from a model config, stream a request,
and gather what it yielded. Until the relay forwards reasoning and tool calls, this is where they are checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.adapters.http_client import HttpClients
from llm_sse_proxy.proxy.deltas import (
    Adapter, ChatRequest, Finish, Message, ReasoningDelta, TextDelta, ToolCallDelta, Usage,
)
from tests.conftest import serve


@dataclass
class Gathered:
    """Everything one stream yielded, tool-call pieces assembled the way the proxy does."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    usage: Usage | None = None
    deltas: list[Any] = field(default_factory=list)


@asynccontextmanager
async def adapter_for(model: dict[str, Any]) -> AsyncIterator[Adapter]:
    """The adapter a model config builds, on the client the proxy would give it."""
    options = {k: v for k, v in model.items() if k not in ("name", "adapter", "fallbacks")}
    spec = REGISTRY[model["adapter"]]
    async with HttpClients(connect_timeout=5).new() as http:
        yield spec.build(spec.options.model_validate(options), http=http)


async def gather(adapter: Adapter, request: ChatRequest | None = None) -> Gathered:
    got = Gathered()
    calls: dict[int, dict[str, Any]] = {}
    async for delta in adapter.stream(request or ChatRequest([Message("user", "hi")])):
        got.deltas.append(delta)
        if isinstance(delta, TextDelta):
            got.text += delta.text
        elif isinstance(delta, ReasoningDelta):
            got.reasoning += delta.text
        elif isinstance(delta, ToolCallDelta):
            call = calls.setdefault(delta.index, {"index": delta.index, "id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or delta.id
            call["name"] = call["name"] or delta.name
            call["arguments"] += delta.arguments
        elif isinstance(delta, Finish):
            got.reason, got.usage = delta.reason, delta.usage
    got.tool_calls = [calls[i] for i in sorted(calls)]
    return got


@dataclass
class Replay:
    """A loopback upstream that answers every request with the same recorded bytes, in small pieces
    (so decoders meet events split anywhere), and keeps what it was sent."""

    body: bytes
    media_type: str = "text/event-stream"
    piece: int = 7
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.requests.append({"url": str(request.url), "headers": dict(request.headers), "body": await request.body()})
        return StreamingResponse(self._pieces(), media_type=self.media_type)

    async def _pieces(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), self.piece):
            yield self.body[i : i + self.piece]


@asynccontextmanager
async def replaying(replay: Replay) -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/{path:path}", replay.handle, methods=["POST"])])
    async with serve(app) as url:
        yield url
