"""The door's two responses, built on the browser door's SSEResponse: the same keep-alive, send
timeout, disconnect cancellation and shutdown, with the relay's events encoded as chat completions.

Both hold the response's head back until there is a chunk to send: a failure before the first one is
then a JSON error with its own status, from which the OpenAI SDKs raise the matching `APIStatusError`
subclass, instead of a 200 stream that fails. A non-streamed reply sends its head only at the end.
"""

from __future__ import annotations

from typing import Any

from llm_sse_proxy.proxy.doors.held import HeldResponse
from llm_sse_proxy.proxy.relay.sse import json_line
from llm_sse_proxy.proxy.doors.openai.chunks import ChunkEncoder, CompletionBuilder, error_body, error_status, terminate_error


class _DoorResponse(HeldResponse):
    def failure_reply(self, error_type: str, message: str) -> tuple[int, bytes]:
        status = error_status(error_type, self.outcome.error_status)
        return status, json_line(error_body(status, error_type, message))


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
