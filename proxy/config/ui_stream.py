"""`ui_stream:` in config.yaml: the AI SDK's UI message stream door (proxy/doors/ui_stream/)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UIStreamConfig(BaseModel):
    """`POST <path>` takes `useChat`'s body; `GET <path>/{id}/stream` resumes; `POST <path>/{id}/stop` stops."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # The AI SDK's default (`DefaultChatTransport`'s `api`), so a page needs no option when it is served here.
    path: str = Field("/api/chat", pattern=r"^(/[A-Za-z0-9._~-]+)+$")
