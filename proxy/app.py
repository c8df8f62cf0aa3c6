"""`create_app(config)` builds everything: routes, CORS, upstream clients. No global state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adapters import REGISTRY
from proxy.config import Config, ModelConfig
from proxy.deltas import Sleep
from proxy.errors import NotFound, PayloadTooLarge, ProxyError, RequestError, UnsupportedMediaType
from proxy.relay import Relay, Upstream
from proxy.response import SSE_HEADERS, Shutdown, SSEResponse
from proxy.validation import ParsedChat, parse_chat_body, parse_stream_query

log = logging.getLogger("llm_sse_proxy")
STATIC = Path(__file__).parent / "static"

HttpClientFactory = Callable[[ModelConfig], httpx2.AsyncClient]


@dataclass
class Runtime:
    """What the lifespan opens: one adapter per model, and the clients they share."""

    upstreams: dict[str, Upstream]


def create_app(
    config: Config,
    *,
    shutdown: Shutdown | None = None,
    sleep: Sleep = anyio.sleep,
    http_client_factory: HttpClientFactory | None = None,
) -> Starlette:
    """Build the proxy for one validated config. `shutdown` lets the server end streams cleanly."""
    make_client = http_client_factory or (lambda model: default_http_client(config))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            upstreams = {}
            for model in config.models:
                spec = REGISTRY[model.adapter]
                http = await stack.enter_async_context(make_client(model)) if spec.uses_http else None
                upstreams[model.name] = Upstream(model.name, spec.build(model.options, http=http, sleep=sleep))
            app.state.runtime = Runtime(upstreams)
            yield

    async def chat(request: Request) -> Response:
        if not _is_json(request.headers.get("content-type", "")):
            raise UnsupportedMediaType("send the chat as JSON with content-type: application/json")
        body = await read_body(request, config.server.max_body_bytes)
        return stream(request, parse_chat_body(body))

    async def stream_get(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(headers=SSE_HEADERS)  # a probe must not start (and bill) a generation
        if "last-event-id" in request.headers:
            # A browser reconnecting after a cut stream: replaying the prompt would bill it again
            # and duplicate text. 204 tells EventSource to stop (WHATWG HTML 9.2.3).
            return Response(status_code=204)
        return stream(request, parse_stream_query(request.query_params, config.default_prompt))

    def stream(request: Request, parsed: ParsedChat) -> Response:
        name = parsed.model or config.default_model
        runtime: Runtime = request.app.state.runtime
        if name not in runtime.upstreams:
            raise NotFound(f"unknown model {name!r}; GET /models lists them")
        chain = [runtime.upstreams[n] for n in [name, *config.model(name).fallbacks]]  # type: ignore[union-attr]
        relay = Relay(chain, parsed.request, retry=config.retry, timeouts=config.timeouts, sleep=sleep)
        return SSEResponse(
            relay.run,
            ping_interval=config.server.ping_interval,
            shutdown=shutdown,
            on_done=lambda ending: log_stream(name, relay, ending),
        )

    async def models(request: Request) -> Response:
        return JSONResponse({"default": config.default_model, "models": [{"name": m.name} for m in config.models]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    routes = [
        Route("/chat", chat, methods=["POST"]),
        Route("/stream", stream_get, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if (STATIC / "index.html").is_file():
        routes += [Route("/", index, methods=["GET"]), Mount("/static", StaticFiles(directory=STATIC))]
    return Starlette(
        routes=routes,
        middleware=[cors(config.server.cors_origins)],
        exception_handlers={ProxyError: request_error, HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )


def default_http_client(config: Config) -> httpx2.AsyncClient:
    """One pool per upstream, sized for many long streams (httpx's default of 100 throttles)."""
    timeouts = config.timeouts
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(connect=timeouts.connect, read=None, write=timeouts.connect, pool=timeouts.connect),
        limits=httpx2.Limits(max_connections=None, max_keepalive_connections=1000),
    )


def cors(origins: list[str]) -> Middleware:
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["content-type", "authorization", "last-event-id", "x-request-id"],
        expose_headers=["retry-after", "x-request-id"],
        max_age=600,
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def log_stream(model: str, relay: Relay, ending: str | None) -> None:
    outcome = relay.outcome
    if ending is not None:
        outcome.reason = ending
    level = logging.INFO if ending != "cancelled" else logging.WARNING
    log.log(
        level,
        "stream model=%s answered_by=%s reason=%s error=%s attempts=%d chunks=%d ttft=%s",
        model, outcome.model, outcome.reason, outcome.error_type, outcome.attempts, outcome.chunks,
        f"{outcome.ttft:.3f}" if outcome.ttft is not None else "-",
    )


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"type": error_type, "message": message}}, status_code=status, headers=headers)


async def request_error(request: Request, exc: Exception) -> Response:
    status = exc.status if isinstance(exc, RequestError) else 502
    assert isinstance(exc, ProxyError)
    return error_response(status, exc.type, exc.message)


_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), exc.detail, exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the proxy failed; see its log")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


__all__ = ["create_app", "Shutdown"]
