"""The AI SDK's UI message stream door: `POST /api/chat` (the path is `ui_stream.path`), what `useChat`'s
`DefaultChatTransport` calls, so a `useChat` page needs no server route of its own.

- `POST <path>`: the chat (proxy/doors/ui_stream/messages.py), answered with the UI message stream
  (proxy/doors/ui_stream/chunks.py). Admission, limits, routing, recovery, metrics and the access line
  are `POST /chat`'s (proxy/doors/chats.py); errors before the stream are the proxy's JSON errors, which
  the SDK raises with the body as the message.
- `GET <path>/{id}/stream`: what `useChat({resume: true})` calls on mount: the chat's newest stream from
  its start (the SDK treats a resume as a replay), then live; 204 when none is running or retained.
- `POST <path>/{id}/stop`: stop the chat's generation on whichever replica runs it (`stop()` in the SDK
  only aborts its fetch, which a resumable stream outlives by design; README, "useChat").
With `resume.enabled: false` the answer is tied to its connection (an aborted fetch stops it), the resume
answers 204 and the stop has nothing to do (204).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.doors.http import request_id
from llm_sse_proxy.proxy.doors.response import SSE_HEADERS, SSEResponse
from llm_sse_proxy.proxy.doors.ui_stream.chunks import HEADERS, UIStreamEncoder, error_frame
from llm_sse_proxy.proxy.doors.ui_stream.messages import MAX_CHAT_ID, parse_ui_chat
from llm_sse_proxy.proxy.resume.streams import ResumableStreams


@dataclass
class UIStreamDoor:
    chats: Chats

    errors: DoorErrors | None = None  # the proxy's own shape: the SDK shows the body as the error's message

    def routes(self) -> list[BaseRoute]:
        settings = self.chats.config.ui_stream
        if not settings.enabled:
            return []
        return [
            Route(settings.path, self.chat, methods=["POST"]),
            Route(settings.path + "/{chat_id}/stream", self.resume, methods=["GET"]),
            Route(settings.path + "/{chat_id}/stop", self.stop, methods=["POST"]),
        ]

    async def chat(self, request: Request) -> Response:
        client, body = await self.chats.read_chat(request)
        chat = parse_ui_chat(body)
        relay, options = await self.chats.begin(request, client, chat.parsed)
        encoder = UIStreamEncoder(f"msg-{secrets.token_urlsafe(12)}")
        resumable = _resumable(request)
        if resumable is None:
            options["headers"] = {**options["headers"], **HEADERS}
            return UIStreamResponse(relay.run, encoder=encoder, **options)
        try:
            sid = await resumable.start_named(client, _name(chat.chat_id), relay.run, options["on_done"],
                                              encoder.framed)
        except BaseException:
            options["on_done"]("error")  # no generation started: free its slot now
            raise
        return resumable.replay(request, sid, HEADERS, _gap_frame)

    async def resume(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(headers={**SSE_HEADERS, **HEADERS})  # a probe: no reader to attach, nothing to replay
        resumable = _resumable(request)
        status = await resumable.find(request, _name(request.path_params["chat_id"])) if resumable else None
        if resumable is None or status is None:
            return Response(status_code=204, headers={"x-request-id": request_id(request), "cache-control": "no-store"})
        return resumable.replay(request, status.sid, HEADERS, _gap_frame)

    async def stop(self, request: Request) -> Response:
        resumable = _resumable(request)
        if resumable is None:
            return Response(status_code=204, headers={"x-request-id": request_id(request)})
        status = await resumable.find(request, _name(request.path_params["chat_id"]))
        return await resumable.stop_stream(request, status)


class UIStreamResponse(SSEResponse):
    """The stream of a chat that is not resumable: the relay's events encoded as they come."""

    def __init__(self, *args: Any, encoder: UIStreamEncoder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = encoder

    async def emit(self, payload: dict[str, Any], event: str | None = None, ending: str | None = None) -> None:
        data = self.encoder.frame(payload, event)
        if payload.get("action") != "terminate":
            if data:
                await self._write(data)
            return
        await self._write(data, more_body=False)
        self._ended = True
        self._report(ending)


def _resumable(request: Request) -> ResumableStreams | None:
    return request.app.state.runtime.resumable  # type: ignore[no-any-return]


def _name(chat_id: str) -> str:
    """The stream label of a chat (a client's own: ResumableStreams binds it to the client's key)."""
    return "ui:" + chat_id[:MAX_CHAT_ID]


def _gap_frame(error_type: str, message: str) -> bytes:
    """A replay the store cannot serve: the SDK replays from the start, so a trimmed start is the whole story."""
    if error_type == "resume_gap":
        message = "the start of this answer is no longer kept (resume.max_events_per_stream); send the message again"
    return error_frame(message)
