"""Checks on a request body's JSON before its model reads it: how deep it nests, and lone surrogates. Pure."""

from __future__ import annotations

import re
from typing import Any

from llm_sse_proxy.proxy.errors import BadRequest

# How deep request JSON may nest (the body, a tool call's arguments): real tool schemas stay near 10 levels;
# encoders and conversions fail near 255 (orjson) or at the recursion limit.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels, the limit for request JSON"


def check_depth(data: Any) -> None:
    """Refuse JSON deeper than MAX_JSON_DEPTH, walked without recursion: a tool's schema is converted
    for each API, and an encoder refuses depth, or recursion runs out, far below what JSON may hold."""
    stack: list[tuple[int, Any]] = [(1, data)]
    while stack:
        depth, value = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"the body: {TOO_DEEP}")
        if isinstance(value, dict):
            stack += [(depth + 1, v) for v in value.values() if isinstance(v, (dict, list))]
        elif isinstance(value, list):
            stack += [(depth + 1, v) for v in value if isinstance(v, (dict, list))]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def text_depth(text: str) -> int:
    """How deep the JSON in `text` nests (its strings skipped), without parsing it: it may not be JSON."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def check_unicode(data: Any) -> None:
    """JSON's `\\ud800` escapes decode to lone surrogates, which no upstream request can encode (issue 16).
    Every string of the body, keys too, walked without recursion; the error names the first one's place."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        place, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{place}.{k}" if place else str(k), v) for k, v in value.items()]
            stack += [(place or "body", k) for k in value]
        elif isinstance(value, list):
            stack += [(f"{place}.{i}", v) for i, v in enumerate(value)]
        elif isinstance(value, str) and not _encodable(value):
            raise BadRequest(f"{place}: a lone UTF-16 surrogate (an escape like \\ud800 without its pair) is not text",
                             param=None if place == "body" else place)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
