"""`create_app(config)`: the composition root. It builds the parts, asks each door for its routes, and
leaves the opening and closing of clients and stores to the lifespan (proxy/runtime.py). No global state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from starlette.applications import Starlette

from llm_sse_proxy.adapters.http_client import HttpClients
from llm_sse_proxy.proxy.admission.admit import Admission
from llm_sse_proxy.proxy.config import Config, ConfigError
from llm_sse_proxy.proxy.deltas import Sleep
from llm_sse_proxy.proxy.doors import DOORS
from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import ErrorRenderer
from llm_sse_proxy.proxy.doors.http import cors
from llm_sse_proxy.proxy.doors.ops import OpsRoutes
from llm_sse_proxy.proxy.doors.response import Shutdown
from llm_sse_proxy.proxy.resume import routes as resume_routes
from llm_sse_proxy.proxy.runtime import HttpClientFactory, RuntimeParts
from llm_sse_proxy.proxy.server.asgi import ProxyApp
from llm_sse_proxy.proxy.state.redis import shared_redis_for
from llm_sse_proxy.proxy.state.routing_redis import routing_state_for
from llm_sse_proxy.proxy.state.streams.backends import BACKENDS as STORE_BACKENDS
from llm_sse_proxy.proxy.telemetry.metrics import Metrics
from llm_sse_proxy.proxy.telemetry.readiness import Readiness
from llm_sse_proxy.proxy.telemetry.tracing import check_installed

log = logging.getLogger("llm_sse_proxy")


def create_app(
    config: Config,
    *,
    shutdown: Shutdown | None = None,
    sleep: Sleep = anyio.sleep,
    http_client_factory: HttpClientFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the proxy for one validated config. `shutdown` lets the server end streams cleanly;
    `clock` times the deployments' breakers and quotas (without Redis), `wall_clock` the in-memory budgets'
    minutes and days."""
    http_clients = HttpClients(config.timeouts.connect)
    metrics = Metrics()
    redis = shared_redis_for(config.resume, on_error=metrics.shared_state_error)  # one pool per process (issue 21)
    admission = Admission.from_config(config, redis, budget_clock=wall_clock)
    check(config, admission)
    routing = routing_state_for(redis, clock=clock)
    metrics.watch_breakers(routing.open_breakers)
    chats = Chats(config, admission, metrics, sleep, shutdown)
    readiness = Readiness(admission.limits, shutdown)
    doors = [door(chats) for door in DOORS] + [OpsRoutes(config, admission, metrics, readiness)]
    routes = [route for door in doors for route in door.routes()]
    if config.resume.enabled:
        routes += resume_routes.ROUTES
    parts = RuntimeParts(config, redis, admission, routing, metrics,
                         http_client_factory or (lambda model: http_clients.new()), sleep, shutdown)
    errors = ErrorRenderer([door.errors for door in doors if door.errors is not None])
    app = ProxyApp(routes=routes, middleware=[cors(config.server.cors_origins)],
                   exception_handlers=errors.handlers(), lifespan=parts.lifespan)
    app.state.metrics = metrics
    return app


def check(config: Config, admission: Admission) -> None:
    """What a config can only be checked against this build, or warned about, at start."""
    if config.resume.enabled and config.resume.store not in STORE_BACKENDS:
        raise ConfigError(f"resume.store: {config.resume.store!r} is not available in this build")
    check_installed(config.tracing)
    if admission.auth.enabled and "*" in config.server.cors_origins:
        log.warning("client keys are on but server.cors_origins allows any site; list your sites' origins")


__all__ = ["create_app", "Shutdown"]
