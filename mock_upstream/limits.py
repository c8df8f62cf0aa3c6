"""The mock's provider limits and hang-ups (issue 22): what a routing proxy must steer around.

- ``rpm=N``: a provider's requests-per-minute quota for this key: past N requests in the last 60 s, a 429
  with ``Retry-After`` (the seconds until the oldest leaves the window), as OpenAI and Azure answer.
- ``hangup_ms=MS``: nothing at all for MS milliseconds, not even the response head, then the connection
  is closed: a provider that accepted the request, went silent, and died.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import anyio
from starlette.responses import JSONResponse, Response

from llm_sse_proxy.mock_upstream.recorder import Attempt

OPTIONS = frozenset({"rpm", "hangup_ms"})
WINDOW = 60.0


async def before_answer(opts: dict[str, str], key: str, state: Any, transport: Any, attempt: Attempt) -> Response | None:
    """The refusal or hang-up this request's options ask for, or None to answer it."""
    if "hangup_ms" in opts:
        await anyio.sleep(float(opts["hangup_ms"]) / 1000)
        attempt.fault, attempt.closed_at = "hangup", time.monotonic()
        if transport is not None:
            transport.close()  # FIN with no response: the client reads "server disconnected"
        return Response(status_code=499)  # nobody reads it
    if "rpm" in opts:
        return _over_quota(int(opts["rpm"]), key, state, attempt)
    return None


def _over_quota(rpm: int, key: str, state: Any, attempt: Attempt) -> Response | None:
    arrivals: dict[str, deque[float]] = state.__dict__.setdefault("rpm_arrivals", {})
    seen = arrivals.setdefault(key, deque())
    now = time.monotonic()
    while seen and seen[0] <= now - WINDOW:
        seen.popleft()
    if len(seen) >= rpm:
        wait = max(1, math.ceil(seen[0] + WINDOW - now))
        attempt.status, attempt.fault, attempt.closed_at = 429, "rpm", now
        body = {"error": {"message": f"Rate limit reached for requests: limit {rpm} per minute (mock rpm).",
                          "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        return JSONResponse(body, 429, headers={"retry-after": str(wait)})
    seen.append(now)
    return None
