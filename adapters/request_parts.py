"""Pieces of a chat request that every native dialect converts the same way. Pure."""

from __future__ import annotations

from typing import Any

from llm_sse_proxy.adapters.upstream_http import loads
from llm_sse_proxy.proxy.errors import UpstreamRejected


def tool_arguments(arguments: str, upstream: str) -> dict[str, Any]:
    """An earlier tool call's arguments, which the OpenAI shape carries as JSON text, as the object the
    native APIs want back."""
    try:
        value = loads(arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamRejected(f"an assistant tool call's arguments are not a JSON object; {upstream} needs one")
    return value


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    return header[5:].split(";", 1)[0], data
