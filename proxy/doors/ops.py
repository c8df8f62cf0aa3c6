"""The routes that are no door to a model: the model list, liveness, metrics, the demo page, leak checks."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from llm_sse_proxy.proxy.admission.admit import Admission
from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.telemetry.metrics import CONTENT_TYPE, Metrics
from llm_sse_proxy.proxy.telemetry.readiness import Readiness

STATIC = Path(__file__).parent.parent / "static"


@dataclass
class OpsRoutes:
    config: Config
    admission: Admission
    metrics: Metrics
    readiness: Readiness
    errors: DoorErrors | None = None  # the proxy's own shape

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/models", self.models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]
        if self.config.metrics.enabled:
            routes.append(Route("/metrics", self.metrics_page, methods=["GET"]))
        if self.config.server.debug_endpoints:
            routes.append(Route("/debug/runtime", debug_runtime, methods=["GET"]))
        if (STATIC / "index.html").is_file():
            routes += [Route("/", index, methods=["GET"]), Mount("/static", StaticFiles(directory=STATIC))]
        return routes

    async def models(self, request: Request) -> Response:
        names = [{"name": m.name} for m in self.config.models]
        # `auth`: whether a stream needs a key, so a page can ask for one before it is refused (a 401 says as much).
        return JSONResponse({"default": self.config.default_model, "models": names, "auth": self.admission.auth.enabled})

    async def readyz(self, request: Request) -> Response:
        ready, checks = await self.readiness.report(getattr(request.app.state, "runtime", None))
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503, headers={"cache-control": "no-store"})

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def debug_runtime(request: Request) -> Response:
    """Leak checks for the soak test: asyncio tasks, open file descriptors, resident memory."""
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return JSONResponse({"tasks": len(asyncio.all_tasks()), "fds": len(os.listdir("/proc/self/fd")), "rss_bytes": rss})
