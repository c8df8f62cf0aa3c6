"""The article's door: `POST /chat` (fetch), `GET /stream` (EventSource), and `POST /token`.

Its events are the relay's own (proxy/relay/sse.py), written as they come: `data: {"text": …}` per delta,
then one `data: {"action": "terminate", …}`. With resumable streams on, each stream is a generation that
any reader may follow (proxy/resume/); otherwise the response runs the relay itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.doors.http import request_id
from llm_sse_proxy.proxy.doors.response import SSE_HEADERS, SSEResponse
from llm_sse_proxy.proxy.doors.validation import ParsedChat, parse_chat_body, parse_stream_query
from llm_sse_proxy.proxy.resume.reader import ReaderResponse
from llm_sse_proxy.proxy.errors import MethodNotAllowed
from llm_sse_proxy.proxy.resume.streams import ResumableStreams
from llm_sse_proxy.proxy.telemetry.tracing import Traced


@dataclass
class ArticleDoor:
    chats: Chats

    errors: DoorErrors | None = None  # None: the proxy's own error shape

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/chat", self.chat, methods=["POST"]),
            Route("/chat", self.chat_by_get, methods=["GET", "PUT", "PATCH", "DELETE"]),  # a 405 that says what to do
            Route("/stream", self.stream_get, methods=["GET"]),
            Route("/token", self.token, methods=["POST"]),
        ]

    async def chat(self, request: Request) -> Response:
        if "last-event-id" in request.headers:
            return await reconnect(request)  # a fetch client's retry (fetch-event-source sends it)
        client, body = await self.chats.read_chat(request)
        return await self.stream(request, client, parse_chat_body(body))

    async def chat_by_get(self, request: Request) -> Response:
        raise MethodNotAllowed(f'{request.method} /chat: /chat takes POST with a JSON body {{"messages": [...]}}; '
                               "a GET (EventSource) goes to GET /stream?prompt=…", allow="POST")

    async def stream_get(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(headers=SSE_HEADERS)  # a probe must not start (and bill) a generation
        if "last-event-id" in request.headers:
            return await reconnect(request)
        client = await self.chats.admission.admit(request, token=request.query_params.get("token"))
        config = self.chats.config
        return await self.stream(request, client, parse_stream_query(request.query_params, config.default_prompt))

    async def token(self, request: Request) -> Response:
        admission = self.chats.admission
        client = await admission.admit(request)
        # Whole seconds, as OAuth's expires_in; rounded down, so a client renews early rather than late.
        body = {"token": admission.issue_token(client), "expires_in": math.floor(self.chats.config.auth.token_ttl)}
        return JSONResponse(body, headers={"x-request-id": request_id(request), "cache-control": "no-store"})

    async def stream(self, request: Request, client: Client, parsed: ParsedChat) -> Response:
        relay, options = await self.chats.begin(request, client, parsed)
        resumable: ResumableStreams | None = request.app.state.runtime.resumable
        if resumable is not None:
            try:
                reader = await resumable.start(request, client, relay.run, options["on_done"], relay.outcome)
            except BaseException:
                options["on_done"]("error")  # no generation started: free its slot now
                raise
            if isinstance(relay.observer, Traced) and isinstance(reader, ReaderResponse):
                relay.observer.follow(reader.sid, reader)  # the reader's disconnect and reconnects, as events
            return reader
        return SSEResponse(relay.run, **options)


async def reconnect(request: Request) -> Response:
    resumable: ResumableStreams | None = request.app.state.runtime.resumable
    if resumable is not None:
        return await resumable.reconnect(request)
    # A client reconnecting after a cut stream: replaying the prompt would bill it again
    # and duplicate text. 204 tells EventSource to stop (WHATWG HTML 9.2.3).
    return Response(status_code=204, headers={"x-request-id": request_id(request)})

