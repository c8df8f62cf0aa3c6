"""The mock's Anthropic dialect: ``POST /v1/messages`` with ``"stream": true`` (wire-formats.md §3).

Point an Anthropic client at the mock's root URL with any ``x-api-key``. Thinking streams when the
request has ``thinking: {"type": "enabled", ...}``; a ``tool_use`` block (its input in two
``input_json_delta`` pieces) follows the text when it has ``tools``. Usage reports a cache read of
half the prompt, so clients can check cache accounting. A mid-stream error is ``overloaded_error``.
"""

from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_sse_proxy.mock_upstream.dialect import (
    REASONING,
    TOOL_ARGUMENTS,
    Ask,
    Dialect,
    Script,
    retry_headers,
    serve,
    sse,
    user_text,
)
from llm_sse_proxy.mock_upstream.plan import Plan

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def parse(request: Request, body: dict, default_reply: str) -> Ask:
    messages, max_tokens = body.get("messages"), body.get("max_tokens")
    if not isinstance(body.get("model"), str) or not isinstance(messages, list) or not isinstance(max_tokens, int):
        raise ValueError("model, messages and max_tokens are required")
    if body.get("stream") is not True:
        raise ValueError("this mock only streams: send \"stream\": true")
    if any(isinstance(m, dict) and m.get("role") not in ("user", "assistant") for m in messages):
        raise ValueError("messages: roles are user and assistant; the system prompt goes in 'system'")
    text, chars = user_text(messages, default_reply)
    thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    tools = body.get("tools") or []
    tool = tools[0].get("name") if tools and isinstance(tools[0], dict) else None
    return Ask(body["model"], text, max_tokens, thinking, tool, chars + len(str(body.get("system", ""))))


def key(request: Request) -> str | None:
    return request.headers.get("x-api-key") or None


def error(status: int, message: str, opts: dict[str, str]) -> JSONResponse:
    kind = opts.get("error_type") or ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}
    return JSONResponse(body, status, headers=retry_headers(opts))


def script(ask: Ask, plan: Plan) -> Script:
    pieces, cut = ask.pieces(plan)
    prompt = ask.prompt_tokens()
    usage = {"input_tokens": prompt - prompt // 2, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": prompt // 2, "output_tokens": 1}
    message = {"id": "msg_mock" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant", "content": [],
               "model": ask.model, "stop_reason": None, "stop_sequence": None, "usage": usage}
    head, index = [sse({"type": "message_start", "message": message}, "message_start"), sse({"type": "ping"}, "ping")], 0
    if ask.thinking:
        head += _block(index, {"type": "thinking", "thinking": "", "signature": ""},
                       [{"type": "thinking_delta", "thinking": REASONING[:30]},
                        {"type": "thinking_delta", "thinking": REASONING[30:]},
                        {"type": "signature_delta", "signature": "EqQBmockSignatureNeverForBrowsers=="}])
        index += 1
    head += _block(index, {"type": "text", "text": ""}, [])[:1]
    content = [sse({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}},
                   "content_block_delta") for p in pieces]
    tail = [sse({"type": "content_block_stop", "index": index}, "content_block_stop")]
    stop = "max_tokens" if cut else "end_turn"
    if ask.tool and not cut:
        arguments = json.dumps(TOOL_ARGUMENTS)
        tail += _block(index + 1, {"type": "tool_use", "id": "toolu_mock01", "name": ask.tool, "input": {}},
                       [{"type": "input_json_delta", "partial_json": arguments[:14]},
                        {"type": "input_json_delta", "partial_json": arguments[14:]}])
        stop = "tool_use"
    tail += [sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": len(pieces)}}, "message_delta"),
             sse({"type": "message_stop"}, "message_stop")]
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (mock error_after)"}}
    return Script(head, content, tail, sse(overloaded, "error"), b"event: content_block_delta\ndata: {not json\n\n")


def _block(index: int, start: dict, deltas: list[dict]) -> list[bytes]:
    events = [sse({"type": "content_block_start", "index": index, "content_block": start}, "content_block_start")]
    events += [sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta") for d in deltas]
    return events + [sse({"type": "content_block_stop", "index": index}, "content_block_stop")]


DIALECT = Dialect(parse, key, error, script)


async def messages(request: Request) -> Response:
    return await serve(request, DIALECT)


ROUTES = [Route("/v1/messages", messages, methods=["POST"])]
