"""`GET /readyz`: whether this process can serve a new stream now (issue 25); `/healthz` stays liveness.

Ready means: the server is not stopping, the resumable-stream store can take a stream (Redis answers,
or the memory budget has room), and the shared limits can be reached (Redis, with `resume.redis_url`).
Each check is bounded, so a silent Redis makes the answer a 503 in about two seconds, never a hang. The
body names what is not ready and why, with a host and port at most: never a URL, which may hold a password.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from llm_sse_proxy.proxy.doors.response import Shutdown
from llm_sse_proxy.proxy.state.limits import SharedLimits

CHECK_TIMEOUT = 3.0  # seconds for all checks together; the Redis client gives up within about two
Check = Callable[[], Awaitable[str | None]]  # None when ready, else why not


@dataclass
class Readiness:
    limits: SharedLimits
    shutdown: Shutdown | None

    async def report(self, runtime: Any) -> tuple[bool, dict[str, str]]:
        """(ready, each check's "ok" or why not). `runtime` is the lifespan's (None before it opened)."""
        results: dict[str, str] = {"draining": "ok"}
        if self.shutdown is not None and self.shutdown.draining:
            results["draining"] = "the server is stopping"
        checks: dict[str, Check] = {"limits": self.limits.ready}
        resumable = getattr(runtime, "resumable", None)
        if resumable is not None:
            checks["store"] = resumable.store.ready
        elif runtime is None:
            results["runtime"] = "the upstream clients are not open yet"
        async with anyio.create_task_group() as group:
            for name, check in checks.items():
                group.start_soon(_run, name, check, results)
        return all(value == "ok" for value in results.values()), results


async def _run(name: str, check: Check, results: dict[str, str]) -> None:
    results[name] = "did not answer within %g s" % CHECK_TIMEOUT
    with anyio.move_on_after(CHECK_TIMEOUT):
        results[name] = await check() or "ok"
