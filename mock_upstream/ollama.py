"""The mock's Ollama dialect: ``POST /api/chat``, streamed as NDJSON (wire-formats.md §5.1).

Point an Ollama client at the mock's root URL; no key is needed. ``message.thinking`` lines come first
when the request sets ``think``; a line with a whole ``tool_calls`` entry follows the text when it
sends ``tools``. The last line has ``done: true``, ``done_reason`` and the eval counts. A mid-stream
error is an ``{"error": ...}`` line under the 200, as Ollama sends it.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_sse_proxy.mock_upstream.dialect import (
    REASONING, TOOL_ARGUMENTS, Ask, Dialect, Script, retry_headers, serve, user_text,
)
from llm_sse_proxy.mock_upstream.plan import Plan

CREATED_AT = "2026-01-01T00:00:00.000000Z"


def parse(request: Request, body: dict, default_reply: str) -> Ask:
    messages = body.get("messages")
    if not isinstance(body.get("model"), str) or not isinstance(messages, list):
        raise ValueError("model and messages are required")
    if body.get("stream") is False:
        raise ValueError("this mock only streams: leave stream unset or true")
    text, chars = user_text(messages, default_reply)
    options = body.get("options") or {}
    tools = body.get("tools") or []
    tool = tools[0].get("function", {}).get("name") if tools and isinstance(tools[0], dict) else None
    return Ask(body["model"], text, options.get("num_predict"), bool(body.get("think")), tool, chars)


def key(request: Request) -> str | None:
    return request.headers.get("authorization", "").removeprefix("Bearer ")  # keyless, as a local server


def error(status: int, message: str, opts: dict[str, str]) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=retry_headers(opts))


def script(ask: Ask, plan: Plan) -> Script:
    pieces, cut = ask.pieces(plan)
    head = [_line(ask, thinking=REASONING[:30]), _line(ask, thinking=REASONING[30:])] if ask.thinking else []
    content = [_line(ask, content=p) for p in pieces]
    tail = []
    if ask.tool and not cut:
        tail.append(_line(ask, tool_calls=[{"function": {"name": ask.tool, "arguments": TOOL_ARGUMENTS}}]))
    final = {"model": ask.model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": ""},
             "done": True, "done_reason": "length" if cut else "stop", "total_duration": 1000,
             "load_duration": 10, "prompt_eval_count": ask.prompt_tokens(), "prompt_eval_duration": 100,
             "eval_count": len(pieces), "eval_duration": 800}
    tail.append(_dumps(final))
    oops = _dumps({"error": "an error was encountered while running the model (mock error_after)"})
    return Script(head, content, tail, oops, b"{not json\n", media_type="application/x-ndjson")


def _line(ask: Ask, **message: object) -> bytes:
    return _dumps({"model": ask.model, "created_at": CREATED_AT,
                   "message": {"role": "assistant", "content": "", **message}, "done": False})


def _dumps(obj: object) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


async def chat(request: Request) -> Response:
    return await serve(request, Dialect(parse, key, error, script))


ROUTES = [Route("/api/chat", chat, methods=["POST"])]
