"""The mock's Gemini dialect: ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (wire-formats.md §4).

Point a Gemini client at ``{mock}/v1beta`` with any ``x-goog-api-key`` (or ``?key=``). Thought parts
(``thought: true``) stream first when the request sets ``thinkingConfig.includeThoughts``; a
``functionCall`` part comes with the last chunk when it declares functions. The last chunk carries
``finishReason``; then the body ends, as Gemini's does. ``retry_after`` goes in the error's
``RetryInfo`` (Gemini sends no Retry-After header). A mid-stream error is a 503 error chunk.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_sse_proxy.mock_upstream.dialect import REASONING, TOOL_ARGUMENTS, Ask, Dialect, Script, serve, sse, user_text
from llm_sse_proxy.mock_upstream.plan import Plan

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def parse(request: Request, body: dict, default_reply: str) -> Ask:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("contents: a non-empty list is required")
    messages = [{"role": "user" if c.get("role", "user") == "user" else "assistant",
                 "content": "".join(p.get("text", "") for p in c.get("parts") or () if isinstance(p, dict))}
                for c in contents if isinstance(c, dict)]
    text, chars = user_text(messages, default_reply)
    config = body.get("generationConfig") or {}
    thinking = bool((config.get("thinkingConfig") or {}).get("includeThoughts"))
    declarations = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
    tool = declarations[0].get("name") if declarations else None
    return Ask(_model(request), text, config.get("maxOutputTokens"), thinking, tool, chars)


def _model(request: Request) -> str:
    model, _, action = request.path_params["target"].rpartition(":")
    if action != "streamGenerateContent" or request.query_params.get("alt") != "sse":
        raise ValueError("this mock serves only :streamGenerateContent?alt=sse")
    return model


def key(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None


def error(status: int, message: str, opts: dict[str, str]) -> JSONResponse:
    error = {"code": status, "message": message, "status": opts.get("error_type") or STATUS_NAMES.get(status, "UNKNOWN")}
    delay = float(opts["retry_after"]) if "retry_after" in opts else None
    if "retry_after_ms" in opts:
        delay = float(opts["retry_after_ms"]) / 1000
    if delay is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"}]
    return JSONResponse({"error": error}, status)


def script(ask: Ask, plan: Plan) -> Script:
    pieces, cut = ask.pieces(plan)
    prompt, thoughts = ask.prompt_tokens(), (7 if ask.thinking else 0)
    head = [_chunk([{"text": REASONING[:30], "thought": True}], prompt, 0, thoughts),
            _chunk([{"text": REASONING[30:], "thought": True}], prompt, 0, thoughts)] if ask.thinking else []
    content = [_chunk([{"text": p}], prompt, i + 1, thoughts) for i, p in enumerate(pieces)]
    parts = []
    if ask.tool and not cut:
        parts = [{"functionCall": {"name": ask.tool, "args": TOOL_ARGUMENTS}, "thoughtSignature": "CiIBmockSig=="}]
    last = _chunk(parts, prompt, len(pieces), thoughts, "MAX_TOKENS" if cut else "STOP")
    unavailable = {"error": {"code": 503, "message": "The model is overloaded (mock error_after).",
                             "status": "UNAVAILABLE"}}
    return Script(head, content, [last], sse(unavailable), b"data: {not json\n\n")


def _chunk(parts: list[dict], prompt: int, completion: int, thoughts: int, finish: str | None = None) -> bytes:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": completion,
             "totalTokenCount": prompt + completion + thoughts}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return sse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "mock-gemini"})


async def generate(request: Request) -> Response:
    try:
        model = _model(request)
    except ValueError:
        model = request.path_params["target"]
    return await serve(request, Dialect(parse, key, error, script), model_hint=model)


ROUTES = [Route("/v1beta/models/{target:path}", generate, methods=["POST"])]
