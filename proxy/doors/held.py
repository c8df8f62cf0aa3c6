"""A door's response whose head waits for the first event: what the OpenAI and Anthropic doors share.

A failure before anything was sent is then a JSON error with its own status, from which the SDKs raise
the matching status error, instead of a 200 stream that fails. A non-streamed reply sends its head only
at the end. Everything else (keep-alive, send timeout, disconnect, shutdown) is SSEResponse's.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from llm_sse_proxy.proxy.doors.response import SEND_BODY, SSEResponse
from llm_sse_proxy.proxy.relay.outcome import Outcome

_JSON = (b"content-type", b"application/json")
_STREAM_ONLY = (b"content-type", b"x-accel-buffering")


class HeldHead:
    """The client's `send`, keeping `http.response.start` until the first chunk, or until the end, when
    `reply` (status, JSON bytes) goes out instead of the stream.

    The head goes through the middlewares' `send` (CORS adds its headers there), the chunks through the
    server's own (proxy/doors/response.py, SEND_BODY), as SSEResponse sends them.
    """

    def __init__(self, ping: bytes, fallback: tuple[int, bytes]) -> None:
        self._ping = ping
        self._fallback = fallback  # the reply when the response ends with none set
        self._head_send: Send | None = None
        self._body_send: Send | None = None
        self._head: Message | None = None
        self.started = False
        self.reply: tuple[int, bytes] | None = None

    @property
    def unwrapped(self) -> Send:
        assert self._body_send is not None
        return self._body_send

    def bind(self, head_send: Send, body_send: Send) -> Send:
        self._head_send, self._body_send = head_send, body_send
        return self

    async def __call__(self, message: Message) -> None:
        assert self._head_send is not None and self._body_send is not None
        if self.started:
            return await self._body_send(message)
        if message["type"] == "http.response.start":
            self._head = message
            return
        if message.get("body") == self._ping:
            return  # nothing to keep alive yet: the client is waiting for the head
        assert self._head is not None
        if message.get("more_body"):
            self.started = True
            await self._head_send(self._head)
            return await self._body_send(message)
        await self._send_reply(self._head_send)

    async def _send_reply(self, send: Send) -> None:
        assert self._head is not None
        status, body = self.reply or self._fallback
        headers = [(k, v) for k, v in self._head["headers"] if k not in _STREAM_ONLY]
        await send({"type": "http.response.start", "status": status, "headers": [*headers, _JSON]})
        await send({"type": "http.response.body", "body": body})


class HeldResponse(SSEResponse):
    """SSEResponse with its head held (HeldHead); a door says how it renders a failure before the start."""

    def __init__(self, *args: Any, outcome: Outcome, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcome = outcome
        self.held = HeldHead(self.ping, self.failure_reply("internal_error", "no answer"))

    def failure_reply(self, error_type: str, message: str) -> tuple[int, bytes]:
        """(status, JSON body) of a failure before anything was sent, in the door's shape."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = self.held.bind(send, scope.get(SEND_BODY, send))
        await super().__call__({**scope, SEND_BODY: held}, receive, held)

    async def _end(self, ending: str | None) -> None:
        """At the terminate: report, then end the body (or send the held reply, when none has started)."""
        self._report(ending)
        await self._write(b"", more_body=False)
        self._ended = True

    def _fail_before_start(self, error_type: str, message: str) -> None:
        self.held.reply = self.failure_reply(error_type, message)
