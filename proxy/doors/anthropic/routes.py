"""`POST /v1/messages`: Anthropic's Messages API as a door, so Anthropic's SDKs and the tools built on them
reach any configured model through the proxy's auth, limits, routing and recovery.

It shares everything with `POST /chat` but the body and the encoding (proxy/doors/chats.py): the client's
key (`x-api-key`, as Anthropic's SDKs send it, or `Authorization: Bearer`), the rate and stream limits, the
relay, the metrics and the access line. `anthropic-version` is accepted and not checked: the wire format
served is the one every version since 2023-06-01 reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from llm_sse_proxy.proxy.doors.anthropic.events import (
    REPLY_EVENTS, STREAM_EVENTS, THINKING, MessageBuilder, MessageEncoder, error_body,
)
from llm_sse_proxy.proxy.doors.anthropic.request import parse_messages_body
from llm_sse_proxy.proxy.doors.anthropic.response import MessageReply, MessageStream
from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.doors.http import request_id

PATH = "/v1/messages"


@dataclass
class AnthropicDoor:
    chats: Chats
    errors: DoorErrors | None = field(default=DoorErrors((PATH,), error_body))

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.messages, methods=["POST"])]

    async def messages(self, request: Request) -> Response:
        request = with_bearer(request)
        client, body = await self.chats.read_chat(request)
        parsed = parse_messages_body(body)
        events = STREAM_EVENTS if parsed.chat.stream else REPLY_EVENTS
        if parsed.thinking:
            events |= {THINKING}
        relay, options = await self.chats.begin(request, client, replace(parsed.chat, events=events))
        rid = options["headers"]["x-request-id"]
        options["headers"]["request-id"] = rid  # where Anthropic's SDKs read a request's id
        model = parsed.chat.model or self.chats.config.default_model
        if parsed.chat.stream:
            return MessageStream(relay.run, encoder=MessageEncoder(f"msg_{rid}"), requested_model=model,
                                 outcome=relay.outcome, **options)
        return MessageReply(relay.run, builder=MessageBuilder(f"msg_{rid}"), requested_model=model,
                            outcome=relay.outcome, **options)


def with_bearer(request: Request) -> Request:
    """The request with its `x-api-key` as `Authorization: Bearer`, which admission reads; as it is when it
    has no key there, or an Authorization header of its own."""
    headers = request.scope["headers"]
    key = next((value for name, value in headers if name == b"x-api-key"), None)
    if key is None or any(name == b"authorization" for name, _ in headers):
        return request
    request_id(request)  # named on the original scope first, so both requests carry the same id
    return Request({**request.scope, "headers": [*headers, (b"authorization", b"Bearer " + key)]}, request.receive)
