"""`create_app(config)` builds everything: routes, CORS, upstream clients. No global state."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.adapters.http_client import HttpClients
from llm_sse_proxy.proxy.telemetry import access_log
from llm_sse_proxy.proxy.admission.admit import Admission
from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.config import Config, ConfigError, ModelConfig
from llm_sse_proxy.proxy.state.cooldowns import cooldowns_for
from llm_sse_proxy.proxy.deltas import Adapter, Sleep
from llm_sse_proxy.proxy.errors import (
    NotFound, PayloadTooLarge, ProxyError, RequestError, RequestTimeout, UnsupportedMediaType,
)
from llm_sse_proxy.proxy.server.http10 import close_delimited
from llm_sse_proxy.proxy.admission.limits import CappedAdapter, check_size
from llm_sse_proxy.proxy.telemetry.log_format import REQUEST_ID
from llm_sse_proxy.proxy.telemetry.metrics import CONTENT_TYPE, Metrics
from llm_sse_proxy.proxy.relay.relay import Relay, Upstream
from llm_sse_proxy.proxy.doors.response import ABORT, SEND_BODY, SSE_HEADERS, Shutdown, SSEResponse
from llm_sse_proxy.proxy.resume import routes as resume_routes
from llm_sse_proxy.proxy.state.streams.backends import BACKENDS as STORE_BACKENDS
from llm_sse_proxy.proxy.resume.generations import Generations
from llm_sse_proxy.proxy.resume.streams import ResumableStreams
from llm_sse_proxy.proxy.doors.openai.routes import Door
from llm_sse_proxy.proxy.doors.validation import ParsedChat, check_supported, parse_chat_body, parse_stream_query

log = logging.getLogger("llm_sse_proxy")
STATIC = Path(__file__).parent / "static"

HttpClientFactory = Callable[[ModelConfig], httpx2.AsyncClient]
# A stream is a few KiB a second: small buffers cost it nothing, and bound a stalled client's cost.
SEND_BUFFER_BYTES = 64 * 1024
WRITE_HIGH_WATER = 16 * 1024


@dataclass
class Runtime:
    """What the lifespan opens: one adapter per model, and the clients they share."""

    upstreams: dict[str, Upstream]
    resumable: ResumableStreams | None = None  # None with resume.enabled: false


def create_app(
    config: Config,
    *,
    shutdown: Shutdown | None = None,
    sleep: Sleep = anyio.sleep,
    http_client_factory: HttpClientFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """Build the proxy for one validated config. `shutdown` lets the server end streams cleanly;
    `clock` times the upstreams' cooldowns."""
    http_clients = HttpClients(config.timeouts.connect)
    make_client = http_client_factory or (lambda model: http_clients.new())
    metrics = Metrics()
    admission = Admission.from_config(config, on_error=metrics.shared_state_error)
    cooldowns = cooldowns_for(config, on_error=metrics.shared_state_error, clock=clock)
    if config.resume.enabled and config.resume.store not in STORE_BACKENDS:
        raise ConfigError(f"resume.store: {config.resume.store!r} is not available in this build")
    if admission.auth.enabled and "*" in config.server.cors_origins:
        log.warning("client keys are on but server.cors_origins allows any site; list your sites' origins")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(admission.limits)
            await stack.enter_async_context(cooldowns)
            upstreams = {}
            for model in config.models:
                spec = REGISTRY[model.adapter]
                http = await stack.enter_async_context(make_client(model)) if spec.uses_http else None
                adapter: Adapter = spec.build(model.options, http=http, sleep=sleep)
                if model.max_tokens_cap is not None:
                    adapter = CappedAdapter(adapter, model.max_tokens_cap)
                upstreams[model.name] = Upstream(model.name, adapter, show_reasoning=model.reasoning == "stream",
                                                 recovery=model.recovery, continue_with=model.continue_with)
            app.state.runtime = Runtime(upstreams, await open_resumable(stack))
            yield

    async def open_resumable(stack: AsyncExitStack) -> ResumableStreams | None:
        if not config.resume.enabled:
            return None
        store = await stack.enter_async_context(STORE_BACKENDS[config.resume.store](config.resume))
        generations = Generations(store, shutdown=shutdown, on_store_failure=metrics.store_failure)
        stack.push_async_callback(generations.aclose)  # before the store closes
        return ResumableStreams(
            store, generations, admission.auth, admission.limits,
            ping_interval=config.server.ping_interval, send_timeout=config.server.send_timeout,
            request_id=request_id)

    async def chat(request: Request) -> Response:
        if "last-event-id" in request.headers:
            return await reconnect(request)  # a fetch client's retry (fetch-event-source sends it)
        client, body = await read_chat(request)
        return await stream(request, client, parse_chat_body(body))

    async def read_chat(request: Request) -> tuple[Client, bytes]:
        client = await admission.admit(request)
        if not _is_json(request.headers.get("content-type", "")):
            raise UnsupportedMediaType("send the chat as JSON with content-type: application/json")
        return client, await read_body(request, config.server.max_body_bytes)

    async def stream_get(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(headers=SSE_HEADERS)  # a probe must not start (and bill) a generation
        if "last-event-id" in request.headers:
            return await reconnect(request)
        client = await admission.admit(request, token=request.query_params.get("token"))
        return await stream(request, client, parse_stream_query(request.query_params, config.default_prompt))

    async def reconnect(request: Request) -> Response:
        resumable: ResumableStreams | None = request.app.state.runtime.resumable
        if resumable is not None:
            return await resumable.reconnect(request)
        # A client reconnecting after a cut stream: replaying the prompt would bill it again
        # and duplicate text. 204 tells EventSource to stop (WHATWG HTML 9.2.3).
        return Response(status_code=204, headers={"x-request-id": request_id(request)})

    async def token(request: Request) -> Response:
        client = await admission.admit(request)
        body = {"token": admission.issue_token(client), "expires_in": config.auth.token_ttl}
        return JSONResponse(body, headers={"x-request-id": request_id(request), "cache-control": "no-store"})

    async def stream(request: Request, client: Client, parsed: ParsedChat) -> Response:
        relay, options = await begin(request, client, parsed)
        runtime: Runtime = request.app.state.runtime
        if runtime.resumable is not None:
            try:
                return await runtime.resumable.start(request, client, relay.run, options["on_done"])
            except BaseException:
                options["on_done"]("error")  # no generation started: free its slot now
                raise
        return SSEResponse(relay.run, **options)

    async def begin(request: Request, client: Client, parsed: ParsedChat) -> tuple[Relay, dict[str, Any]]:
        """The relay for a chat, and its response's options; the client's stream slot is taken."""
        name = parsed.model or config.default_model
        runtime: Runtime = request.app.state.runtime
        if name not in runtime.upstreams:
            raise NotFound(f"unknown model {name!r}; GET /models lists them")
        check_size(parsed.request, config.limits)
        models = [config.model(n) for n in [name, *config.model(name).fallbacks]]  # type: ignore[union-attr]
        for model in models:  # a fallback must answer the same request, or be refused up front too
            check_supported(parsed.request, model.name, REGISTRY[model.adapter].takes)  # type: ignore[union-attr]
        chain = [runtime.upstreams[m.name] for m in models]  # type: ignore[union-attr]
        relay = Relay(chain, parsed.request, retry=config.retry, timeouts=config.timeouts, sleep=sleep,
                      events=parsed.events, faults=config.faults, cooldowns=cooldowns)
        rid = request_id(request)
        prompt = _last_user_message(parsed) if config.logging.log_prompts else None
        leave = await admission.enter(client)  # last: nothing below can fail and leak the slot
        metrics.stream_started()
        started = anyio.current_time()

        def done(ending: str | None) -> None:
            leave()
            outcome = relay.outcome
            if ending is not None:
                outcome.reason = ending
            duration = anyio.current_time() - started
            metrics.stream_ended(name, outcome, duration)
            if config.logging.access_log:
                access_log.write(access_log.stream_line(
                    request_id=rid, client=client.identity, model=name, outcome=outcome, duration=duration,
                    prompt=prompt))

        return relay, {"ping_interval": config.server.ping_interval, "send_timeout": config.server.send_timeout,
                       "shutdown": shutdown, "headers": {"x-request-id": rid}, "on_done": done}

    async def models(request: Request) -> Response:
        names = [{"name": m.name} for m in config.models]
        # `auth`: whether a stream needs a key, so a page can ask for one before it is refused (a 401 says as much).
        return JSONResponse({"default": config.default_model, "models": names, "auth": admission.auth.enabled})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    routes = [
        Route("/chat", chat, methods=["POST"]),
        Route("/stream", stream_get, methods=["GET"]),
        Route("/token", token, methods=["POST"]),
        Route("/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    routes += Door(config, admission, read_chat, begin).routes()
    if config.resume.enabled:
        routes += resume_routes.ROUTES
    if config.metrics.enabled:
        routes.append(Route("/metrics", metrics_page, methods=["GET"]))
    if config.server.debug_endpoints:
        routes.append(Route("/debug/runtime", debug_runtime, methods=["GET"]))
    if (STATIC / "index.html").is_file():
        routes += [Route("/", index, methods=["GET"]), Mount("/static", StaticFiles(directory=STATIC))]
    app = ProxyApp(
        routes=routes,
        middleware=[cors(config.server.cors_origins)],
        exception_handlers={ProxyError: request_error, HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    return app


class ProxyApp(Starlette):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ASGI has no way to abort a connection, and a graceful close waits for a client that stopped
        # reading. Under uvicorn `send` is a bound method of the request cycle, which holds the
        # transport; Starlette's middlewares wrap `send`, so this is the last place to reach it.
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope[ABORT] = functools.partial(reset_connection, transport)
                bound_send_buffers(transport)
            if scope.get("http_version") == "1.0":
                send = close_delimited(send)
            scope[SEND_BODY] = send
        await super().__call__(scope, receive, send)


def reset_connection(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset: the kernel drops what the client never read, instead of holding it and
    waiting for the client (a plain close, even asyncio's abort(), sends it all first)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed: nothing left to drop
    transport.abort()  # type: ignore[attr-defined]


def bound_send_buffers(transport: asyncio.BaseTransport) -> None:
    """Bound what a client that stops reading holds in the proxy: the kernel's send buffer (autotuned up to
    4 MiB on Linux; set, it stays at twice SEND_BUFFER_BYTES) and the transport's (issue 16, docs/security.md)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:
            pass  # already closed
    transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]


def cors(origins: list[str]) -> Middleware:
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["content-type", "authorization", "last-event-id", "x-request-id"],
        expose_headers=["retry-after", "x-request-id", "x-stream-id"],
        max_age=600,
    )


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


async def debug_runtime(request: Request) -> Response:
    """Leak checks for the soak test: asyncio tasks, open file descriptors, resident memory."""
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return JSONResponse({"tasks": len(asyncio.all_tasks()), "fds": len(os.listdir("/proc/self/fd")), "rss_bytes": rss})


def _last_user_message(parsed: ParsedChat) -> str:
    users = [m.text for m in parsed.request.messages if m.role == "user"]
    return users[-1][:2000] if users else ""


def error_response(
    request: Request, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    if status < 500:
        request.app.state.metrics.reject(error_type)
    headers = {**(headers or {}), "x-request-id": request_id(request)}
    return JSONResponse({"error": {"type": error_type, "message": message}}, status_code=status, headers=headers)


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    if isinstance(exc, RequestError):
        return error_response(request, exc.status, exc.type, exc.message, exc.headers())
    return error_response(request, 502, exc.type, exc.message)


_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(request, exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), exc.detail, exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal_error", "the proxy failed; see its log")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


__all__ = ["create_app", "Shutdown"]
