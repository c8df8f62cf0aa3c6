"""The front doors: each turns requests of one API into chats, and the relay's events into that API's
stream. A door is a class with `routes()` and `errors` (its error shape, or None for the proxy's own),
built from the shared `Chats`; adding one is a module and one line in `DOORS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.routing import BaseRoute

from llm_sse_proxy.proxy.doors.anthropic.routes import AnthropicDoor
from llm_sse_proxy.proxy.doors.article import ArticleDoor
from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.doors.openai.routes import OpenAIDoor
from llm_sse_proxy.proxy.doors.usage import UsageDoor
from llm_sse_proxy.proxy.doors.ui_stream.routes import UIStreamDoor


class Door(Protocol):
    errors: DoorErrors | None

    def routes(self) -> list[BaseRoute]: ...


# Routes match in this order: the OpenAI door is last, since it answers any /v1 path the doors before it
# do not take (an OpenAI-style 404 or 405).
DOORS: list[Callable[[Chats], Door]] = [ArticleDoor, AnthropicDoor, UIStreamDoor, UsageDoor, OpenAIDoor]
