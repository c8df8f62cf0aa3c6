"""The door's two responses, on the held-head response (proxy/doors/held.py): a failure before anything was
sent is an Anthropic error object with its status, from which the SDKs raise the matching error class.

`message_start` waits for the first event, so its `model` names the model that answered it (a fallback's,
when the first model failed before its first token). Keep-alives are Anthropic's `ping` events.
"""

from __future__ import annotations

from typing import Any

from llm_sse_proxy.proxy.doors.anthropic.events import (
    PING, MessageBuilder, MessageEncoder, error_body, error_status, terminate_error,
)
from llm_sse_proxy.proxy.doors.held import HeldResponse
from llm_sse_proxy.proxy.relay.sse import json_line


class _AnthropicResponse(HeldResponse):
    ping = PING

    def __init__(self, *args: Any, requested_model: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requested_model = requested_model

    @property
    def model(self) -> str:
        """The model that answered (the relay records it at the first event), else the one asked for."""
        return self.outcome.model or self.requested_model

    def failure_reply(self, error_type: str, message: str) -> tuple[int, bytes]:
        status = error_status(error_type, self.outcome.error_status)
        return status, json_line(error_body(status, error_type, message))


class MessageStream(_AnthropicResponse):
    """`stream: true`: the events as Anthropic's message stream."""

    def __init__(self, *args: Any, encoder: MessageEncoder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = encoder

    async def emit(self, payload: dict[str, Any], event: str | None = None, ending: str | None = None) -> None:
        if event is None and "text" in payload:  # the hot path: a piece of the answer
            if not self.held.started:
                await self._open()
            await self._write(self.encoder.text(payload["text"]))
        elif event is not None:
            data = self.encoder.named(event, payload)
            if data is not None:
                if not self.held.started:
                    await self._open()
                await self._write(data)
        else:
            await self._terminate(payload)
            await self._end(ending)

    async def _open(self) -> None:
        """Send the head and `message_start`; from then on events bypass the held `send`."""
        await self._write(self.encoder.start(self.model))
        self._send = self.held.unwrapped

    async def _terminate(self, payload: dict[str, Any]) -> None:
        failure = terminate_error(payload)
        if failure is None:
            if not self.held.started:
                await self._open()
            await self._write(self.encoder.end(payload))
        elif self.held.started:
            status = error_status(failure[0], self.outcome.error_status)
            await self._write(self.encoder.error(status, *failure))
        else:
            self._fail_before_start(*failure)


class MessageReply(_AnthropicResponse):
    """`stream: false`: the events gathered into one `message`, sent when the answer is done."""

    def __init__(self, *args: Any, builder: MessageBuilder, **kwargs: Any) -> None:
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
            self.held.reply = (200, json_line(self.builder.message(self.model, payload)))
        await self._end(ending)
