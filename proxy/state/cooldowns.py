"""Per-upstream cooldowns: an upstream that answers 429 or 503 with Retry-After is left alone until then.

The relay honours Retry-After within one request (it waits before retrying); this holds the model off
for every other request too (issue 14): while it cools down, a request for it goes straight to the next
model of its fallback chain, or, with none left, ends with the upstream's error type and `retry_after`.
The wait is capped by `retry.cooldown_max` (0: no cooldowns).

With `resume.redis_url` the cooldown is shared by every replica: `SET llmsse:cooldown:<model> PX <ms>`,
read with `PTTL` before a model is asked (one round trip, only when this process knows of no cooldown).
Redis failing costs nothing but the sharing: a cooldown is an optimisation, so it fails open, with a
log line and a metric, and this process's own cooldowns still apply.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from redis.exceptions import RedisError

from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.errors import UpstreamError, UpstreamUnavailable
from llm_sse_proxy.proxy.state.redis import SharedRedis

log = logging.getLogger("llm_sse_proxy.cooldown")

COOLING_STATUS = frozenset({429, 503})  # the statuses whose Retry-After speaks for the upstream, not the request
KEY_PREFIX = "llmsse:cooldown:"

Clock = Callable[[], float]


class UpstreamCoolingDown(UpstreamUnavailable):
    """A model skipped because its upstream asked to wait; `retry_after` is the time left, in seconds."""


class Cooldowns(Protocol):
    async def check(self, model: str) -> None:
        """Raise UpstreamCoolingDown while `model` cools down."""

    def note(self, model: str, exc: UpstreamError) -> None:
        """Start a cooldown for `model` if `exc` is a 429/503 with Retry-After."""

    async def __aenter__(self) -> Cooldowns: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class NoCooldowns:
    """`retry.cooldown_max: 0`, and relays built without cooldowns."""

    async def check(self, model: str) -> None:
        return None

    def note(self, model: str, exc: UpstreamError) -> None:
        return None

    async def __aenter__(self) -> NoCooldowns:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def cooldown_seconds(exc: UpstreamError, cap: float) -> float | None:
    """How long an error asks its upstream to be left alone, capped; None when it asks nothing."""
    retry_after = getattr(exc, "retry_after", None)
    if exc.status not in COOLING_STATUS or not retry_after or retry_after <= 0:
        return None
    return min(float(retry_after), cap)


def cooling_down(model: str, seconds: float) -> UpstreamCoolingDown:
    left = max(1, math.ceil(seconds))
    return UpstreamCoolingDown(f"model {model!r} is cooling down: its upstream asked to wait (429/503 with "
                               f"Retry-After); it is asked again in {left} s", retry_after=left)


class MemoryCooldowns:
    """Cooldowns in this process: model name -> the clock time it may be asked again."""

    def __init__(self, cap: float, clock: Clock = time.monotonic) -> None:
        self.cap = cap
        self.clock = clock
        self._until: dict[str, float] = {}

    async def check(self, model: str) -> None:
        left = self.left(model)
        if left > 0:
            raise cooling_down(model, left)

    def left(self, model: str) -> float:
        """Seconds until `model` may be asked again (0 when it may now)."""
        until = self._until.get(model)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._until[model]
            return 0.0
        return left

    def note(self, model: str, exc: UpstreamError) -> None:
        seconds = cooldown_seconds(exc, self.cap)
        if seconds is not None:
            self.hold(model, seconds)

    def hold(self, model: str, seconds: float) -> None:
        until = self.clock() + seconds
        if until > self._until.get(model, 0.0):
            self._until[model] = until
            log.info("model %s cools down for %.1f s (its upstream answered with Retry-After)", model, seconds)

    async def __aenter__(self) -> MemoryCooldowns:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class RedisCooldowns(MemoryCooldowns):
    """This process's cooldowns, and every replica's through Redis."""

    def __init__(self, redis: SharedRedis, cap: float, *, clock: Clock = time.monotonic) -> None:
        super().__init__(cap, clock)
        self.redis = redis  # the process's one client (proxy/state/redis.py), opened and closed by the app
        self._tasks: set[asyncio.Task[None]] = set()

    async def check(self, model: str) -> None:
        await super().check(model)
        try:
            left_ms = await self.redis.client.pttl(KEY_PREFIX + model)
        except (RedisError, OSError) as exc:
            self._failed("cooldown_read", exc)
            return
        if left_ms > 0:  # -2: no key, -1: no expiry (never written so)
            self._until[model] = self.clock() + left_ms / 1000  # no second round trip for it while it lasts
            raise cooling_down(model, left_ms / 1000)

    def hold(self, model: str, seconds: float) -> None:
        super().hold(model, seconds)
        self._spawn(self._share(model, seconds))

    async def _share(self, model: str, seconds: float) -> None:
        try:
            await self.redis.client.set(KEY_PREFIX + model, 1, px=max(1, math.ceil(seconds * 1000)))
        except (RedisError, OSError) as exc:
            self._failed("cooldown_write", exc)

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.redis.failed(operation, exc, "this process's cooldowns still apply")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> RedisCooldowns:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def cooldowns_for(config: Config, redis: SharedRedis | None, clock: Clock = time.monotonic) -> Cooldowns:
    """The cooldowns the config asks for: none, this process's, or shared through Redis."""
    cap = config.retry.cooldown_max
    if cap <= 0:
        return NoCooldowns()
    if redis is None:
        return MemoryCooldowns(cap, clock)
    return RedisCooldowns(redis, cap, clock=clock)
