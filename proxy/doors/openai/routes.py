"""`POST /v1/chat/completions` and `GET /v1/models`: the OpenAI-compatible door.

It shares everything with `POST /chat` but the encoding: the same body model and validation
(proxy/doors/validation.py), admission, relay, metrics and access log (proxy/doors/chats.py). Only
the events the relay emits are turned into chat completions (proxy/doors/openai/chunks.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.doors.openai.errors import openai_error
from llm_sse_proxy.proxy.errors import MethodNotAllowed, NotFound
from llm_sse_proxy.proxy.doors.openai.chunks import REPLY_EVENTS, STREAM_EVENTS, ChunkEncoder, CompletionBuilder
from llm_sse_proxy.proxy.doors.openai.response import ChunkStream, CompletionReply
from llm_sse_proxy.proxy.doors.validation import parse_chat_body

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_SERVED = {"/v1/chat/completions": "POST", "/v1/models": "GET"}


@dataclass
class OpenAIDoor:
    chats: Chats
    clock: Callable[[], float] = field(default=time.time)  # `created` is wall-clock seconds
    errors: DoorErrors | None = DoorErrors(("/v1/",), openai_error)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{name:path}", self.model, methods=["GET"]),
            # Last: what no route above takes, answered as OpenAI answers it, with what this door serves.
            Route("/v1/{rest:path}", self.elsewhere, methods=list(_METHODS)),
        ]

    async def completions(self, request: Request) -> Response:
        client, body = await self.chats.read_chat(request)
        parsed = parse_chat_body(body)
        events = STREAM_EVENTS if parsed.stream else REPLY_EVENTS
        relay, options = await self.chats.begin(request, client, replace(parsed, events=events))
        model = parsed.model or self.chats.config.default_model
        head = (f"chatcmpl-{options['headers']['x-request-id']}", int(self.clock()), model)
        if parsed.stream:
            encoder = ChunkEncoder(*head)
            return ChunkStream(relay.run, encoder=encoder, include_usage=parsed.include_usage,
                               outcome=relay.outcome, **options)
        return CompletionReply(relay.run, builder=CompletionBuilder(*head), outcome=relay.outcome, **options)

    async def models(self, request: Request) -> Response:
        await self.chats.admission.admit(request)
        return JSONResponse({"object": "list", "data": [self._model(m.name) for m in self.chats.config.models]})

    async def model(self, request: Request) -> Response:
        await self.chats.admission.admit(request)
        name = request.path_params["name"]
        if self.chats.config.model(name) is None:
            raise NotFound(f"unknown model {name!r}", code="model_not_found")
        return JSONResponse(self._model(name))

    async def elsewhere(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        allowed = _SERVED.get(path.rstrip("/"))
        if allowed is not None:
            raise MethodNotAllowed(f"{method} {path}: use {allowed} {path}", allow=allowed)
        raise NotFound(f"Invalid URL ({method} {path}): this door serves POST /v1/chat/completions and "
                       "GET /v1/models")

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "llm-sse-proxy"}
