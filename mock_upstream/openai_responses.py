"""The mock's Responses dialect: ``POST /v1/responses`` with ``"stream": true``, in the event shapes of
OpenAI's Python SDK (``openai/types/responses/``): each event ``event: <type>`` and its JSON with a
``sequence_number``.

Point a Responses client at the mock's ``/v1`` with any bearer key. A reasoning summary streams first
when the request asks for one (``reasoning: {"summary": ...}``); a ``function_call`` item (its arguments
in two deltas) follows the message when it sends ``tools``. Usage reports a cache read of half the prompt
and the summary's pieces as reasoning tokens. ``max_output_tokens`` cuts the reply (one chunk a token)
into a ``response.incomplete``. A mid-stream error is an ``error`` event with code ``server_error``.
The faults are the other dialects' (mock_upstream/dialect.py).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_sse_proxy.mock_upstream.dialect import REASONING, TOOL_ARGUMENTS, Ask, Dialect, Script, retry_headers, serve
from llm_sse_proxy.mock_upstream.plan import Plan, reply_text


def parse(request: Request, body: dict, default_reply: str) -> Ask:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(body.get("model"), str) or not isinstance(items, list):
        raise ValueError("model and input are required")
    if body.get("stream") is not True:
        raise ValueError("this mock only streams: send \"stream\": true")
    messages = [item for item in items if isinstance(item, dict) and "role" in item]
    text = reply_text({"messages": messages}, default_reply)
    reasoning = body.get("reasoning")
    thinking = isinstance(reasoning, dict) and reasoning.get("summary") is not None
    tools = body.get("tools") or []
    tool = tools[0].get("name") if tools and isinstance(tools[0], dict) else None
    chars = len(json.dumps(items)) + len(str(body.get("instructions", "")))
    return Ask(body["model"], text, body.get("max_output_tokens"), thinking, tool, chars)


def key(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value or None if scheme == "Bearer" else None


def error(status: int, message: str, opts: dict[str, str]) -> JSONResponse:
    kind = opts.get("error_type") or ("server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": opts.get("error_type")}}
    return JSONResponse(body, status, headers=retry_headers(opts))


class _Events:
    """Numbers the events of one response as they are written, in order."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.number}
        self.number += 1
        return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def script(ask: Ask, plan: Plan) -> Script:
    pieces, cut = ask.pieces(plan)
    event, rid = _Events(), "resp_mock" + uuid.uuid4().hex[:20]
    response = {"id": rid, "object": "response", "status": "in_progress", "model": ask.model, "output": [],
                "usage": None}
    head = [event("response.created", response=response), event("response.in_progress", response=response)]
    summary = [REASONING[:30], REASONING[30:]] if ask.thinking else []
    if summary:
        head += _reasoning(event, summary)
    index = 1 if summary else 0
    message = {"id": "msg_mock", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    head += [event("response.output_item.added", output_index=index, item=message),
             event("response.content_part.added", item_id="msg_mock", output_index=index, content_index=0,
                   part={"type": "output_text", "text": "", "annotations": []})]
    content = [event("response.output_text.delta", item_id="msg_mock", output_index=index, content_index=0,
                     delta=piece, logprobs=[]) for piece in pieces]
    tail = [event("response.output_text.done", item_id="msg_mock", output_index=index, content_index=0,
                  text="".join(pieces), logprobs=[]),
            event("response.output_item.done", output_index=index, item={**message, "status": "completed"})]
    if ask.tool and not cut:
        tail += _call(event, index + 1, ask.tool)
    tail.append(_end(event, response, ask, len(pieces), len(summary), cut))
    failure = event("error", code="server_error", message="The server had an error (mock error_after).", param=None)
    return Script(head, content, tail, failure, b"event: response.output_text.delta\ndata: {not json\n\n")


def _reasoning(event: _Events, summary: list[str]) -> list[bytes]:
    item = {"id": "rs_mock", "type": "reasoning", "summary": []}
    return [event("response.output_item.added", output_index=0, item=item),
            event("response.reasoning_summary_part.added", item_id="rs_mock", output_index=0, summary_index=0,
                  part={"type": "summary_text", "text": ""}),
            *[event("response.reasoning_summary_text.delta", item_id="rs_mock", output_index=0, summary_index=0,
                    delta=piece) for piece in summary],
            event("response.reasoning_summary_text.done", item_id="rs_mock", output_index=0, summary_index=0,
                  text="".join(summary)),
            event("response.output_item.done", output_index=0, item=item)]


def _call(event: _Events, index: int, name: str) -> list[bytes]:
    arguments = json.dumps(TOOL_ARGUMENTS)
    item = {"id": "fc_mock", "type": "function_call", "status": "in_progress", "arguments": "",
            "call_id": "call_mock01", "name": name}
    return [event("response.output_item.added", output_index=index, item=item),
            *[event("response.function_call_arguments.delta", item_id="fc_mock", output_index=index, delta=piece)
              for piece in (arguments[:14], arguments[14:])],
            event("response.function_call_arguments.done", item_id="fc_mock", output_index=index, arguments=arguments),
            event("response.output_item.done", output_index=index,
                  item={**item, "status": "completed", "arguments": arguments})]


def _end(event: _Events, response: dict, ask: Ask, chunks: int, reasoning: int, cut: bool) -> bytes:
    prompt = ask.prompt_tokens()
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": prompt // 2},
             "output_tokens": chunks + reasoning, "output_tokens_details": {"reasoning_tokens": reasoning},
             "total_tokens": prompt + chunks + reasoning}
    if cut:
        final = {**response, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": usage}
        return event("response.incomplete", response=final)
    return event("response.completed", response={**response, "status": "completed", "usage": usage})


DIALECT = Dialect(parse, key, error, script)


async def responses(request: Request) -> Response:
    return await serve(request, DIALECT)


ROUTES = [Route("/v1/responses", responses, methods=["POST"])]
