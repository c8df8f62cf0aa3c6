"""What every door does with HTTP alike: read a bounded body, name the request, allow cross-site reads."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request

from llm_sse_proxy.proxy.errors import PayloadTooLarge, RequestTimeout
from llm_sse_proxy.proxy.telemetry import access_log
from llm_sse_proxy.proxy.telemetry.log_format import REQUEST_ID


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:  # the client left, or server.body_timeout ended the connection
        raise RequestTimeout("the request body did not arrive in full") from None
    return b"".join(chunks)


def request_id(request: Request) -> str:
    """The request's id, taken from `X-Request-ID` or made up, the same for every use."""
    rid = request.scope.get("llm_sse_proxy.request_id")
    if rid is None:
        rid = request.scope["llm_sse_proxy.request_id"] = access_log.request_id(request.headers)
        REQUEST_ID.set(rid)  # every log line from here on in this request's tasks carries it
    return rid


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def cors(origins: list[str]) -> Middleware:
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["content-type", "authorization", "last-event-id", "x-request-id"],
        expose_headers=["retry-after", "x-request-id", "x-stream-id"],
        max_age=600,
    )
