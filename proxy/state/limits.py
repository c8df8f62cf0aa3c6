"""The seam between admission and where its counters live: this process (default) or Redis.

`SharedLimits` is what admission asks: charge a client's rate bucket, give it a stream slot, spend a
stream token's nonce. `MemoryLimits` keeps all three in this process, as a single replica needs.
With `resume.redis_url` set, `RedisLimits` (proxy/state/redis_limits.py) keeps them in Redis so that the
limits hold exactly across replicas and a token is single-use across all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from llm_sse_proxy.proxy.admission.auth import Clock, UsedTokens
from llm_sse_proxy.proxy.admission.limits import RateLimiter, StreamGates

Leave = Callable[[], None]  # gives a stream slot back; safe to call more than once


class SharedLimits(Protocol):
    async def take(self, client: str) -> None:
        """Spend one request from the client's bucket, or raise TooManyRequests."""

    async def enter(self, client: str, limit: int | None = None) -> Leave:
        """A stream slot for the client, within `limit` if lower than the configured one (a budget's
        `streams`); 429 or 503 when there is none. Call the result to leave."""

    async def spend_token(self, nonce: str, expires: int) -> None:
        """Use up a verified stream token's nonce, or raise Unauthorized if it was used."""

    async def ready(self) -> str | None:
        """None when the counters can be reached; else why not (for /readyz: no secrets, no URL)."""

    async def __aenter__(self) -> SharedLimits: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class MemoryLimits:
    """All three in this process: exact for one replica, N times the limits for N replicas."""

    def __init__(self, limiter: RateLimiter, gates: StreamGates, used: UsedTokens, clock: Clock = time.time) -> None:
        self.limiter = limiter
        self.gates = gates
        self.used = used
        self.clock = clock

    async def take(self, client: str) -> None:
        self.limiter.take(client)

    async def enter(self, client: str, limit: int | None = None) -> Leave:
        return self.gates.enter(client, limit)

    async def spend_token(self, nonce: str, expires: int) -> None:
        self.used.spend(nonce, expires, self.clock())

    async def ready(self) -> str | None:
        return None  # in this process: always there

    async def __aenter__(self) -> MemoryLimits:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
