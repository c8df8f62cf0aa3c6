"""The door's two responses, built on the browser door's SSEResponse: the same keep-alive, send
timeout, disconnect cancellation and shutdown, with the relay's events encoded as chat completions.

Both hold the response's head back until there is a chunk to send: a failure before the first one is
then a JSON error with its own status, from which the OpenAI SDKs raise the matching `APIStatusError`
subclass, instead of a 200 stream that fails. A non-streamed reply sends its head only at the end.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.doors.response import PING, SEND_BODY, SSEResponse
from llm_sse_proxy.proxy.relay.sse import json_line
from llm_sse_proxy.proxy.doors.openai.chunks import ChunkEncoder, CompletionBuilder, error_body, error_status, terminate_error

_JSON = (b"content-type", b"application/json")
_STREAM_ONLY = (b"content-type", b"x-accel-buffering")


class _HeldHead:
    """The client's `send`, keeping `http.response.start` until the first chunk, or until the end, when
    `reply` (status, JSON bytes) goes out instead of the stream.

    The head goes through the middlewares' `send` (CORS adds its headers there), the chunks through the
    server's own (proxy/doors/response.py, SEND_BODY), as SSEResponse sends them.
    """

    def __init__(self) -> None:
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
        if message.get("body") == PING:
            return  # nothing to keep alive yet: the client is waiting for the head
        assert self._head is not None
        if message.get("more_body"):
            self.started = True
            await self._head_send(self._head)
            return await self._body_send(message)
        await self._send_reply(self._head_send)

    async def _send_reply(self, send: Send) -> None:
        assert self._head is not None
        status, body = self.reply or (502, json_line(error_body(502, "internal_error", "no answer")))
        headers = [(k, v) for k, v in self._head["headers"] if k not in _STREAM_ONLY]
        await send({"type": "http.response.start", "status": status, "headers": [*headers, _JSON]})
        await send({"type": "http.response.body", "body": body})


class _DoorResponse(SSEResponse):
    def __init__(self, *args: Any, outcome: Outcome, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcome = outcome
        self.held = _HeldHead()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = self.held.bind(send, scope.get(SEND_BODY, send))
        await super().__call__({**scope, SEND_BODY: held}, receive, held)

    async def _end(self, ending: str | None) -> None:
        """At the terminate: report, then end the body (or send the held reply, when none has started)."""
        self._report(ending)
        await self._write(b"", more_body=False)
        self._ended = True

    def _fail_before_start(self, error_type: str, message: str) -> None:
        status = error_status(error_type, self.outcome.error_status)
        self.held.reply = (status, json_line(error_body(status, error_type, message)))


class ChunkStream(_DoorResponse):
    """`stream: true`: the events as `chat.completion.chunk` SSE."""

    def __init__(self, *args: Any, encoder: ChunkEncoder, include_usage: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = encoder
        self.include_usage = include_usage

    async def emit(self, payload: dict[str, Any], event: str | None = None, ending: str | None = None) -> None:
        if event is None and "text" in payload:  # the hot path: a piece of the answer
            if not self.held.started:
                await self._open()
            await self._write(self.encoder.text(payload["text"]))
        elif event is not None:
            await self._named(event, payload)
        else:
            await self._terminate(payload)
            await self._end(ending)

    async def _open(self) -> None:
        """Send the head and the role chunk; from then on events bypass the held `send`."""
        if self.outcome.model is not None:  # the relay names the model it committed to before the first event
            self.encoder.answered_by(self.outcome.model)
        await self._write(self.encoder.first())
        self._send = self.held.unwrapped

    async def _named(self, event: str, payload: dict[str, Any]) -> None:
        data = self.encoder.named(event, payload)
        if data is not None:
            if not self.held.started:
                await self._open()
            await self._write(data)

    async def _terminate(self, payload: dict[str, Any]) -> None:
        failure = terminate_error(payload)
        if failure is None:
            if not self.held.started:
                await self._open()
            if payload.get("model"):  # a recovery may have handed the answer to another model
                self.encoder.answered_by(payload["model"])
            await self._write(self.encoder.end(payload, self.include_usage))
        elif self.held.started:
            await self._write(self.encoder.error(*failure))
        else:
            self._fail_before_start(*failure)


class CompletionReply(_DoorResponse):
    """`stream: false`: the events gathered into one `chat.completion`, sent when the answer is done."""

    def __init__(self, *args: Any, builder: CompletionBuilder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.builder = builder

    async def emit(self, payload: dict[str, Any], event: str | None = None, ending: str | None = None) -> None:
        if event is not None or "text" in payload:
            self.builder.add(payload, event)
            return
        failure = terminate_error(payload)
        if failure is not None:
            self._fail_before_start(*failure)
        else:
            self.held.reply = (200, json_line(self.builder.completion(payload)))
        await self._end(ending)
