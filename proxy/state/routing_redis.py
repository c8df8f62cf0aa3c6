"""The routing state in Redis, shared by every replica (issue 22): one script call per take.

`take` is one round trip (proxy/state/routing_scripts.py's TAKE picks and takes a deployment
atomically, so quotas and the half-open probe hold exactly across replicas); `first_token`, `failed`
and `release` go out in the background, off the stream's path. This process keeps its own view too
(`MemoryRouting`, told the same news): when Redis fails, a take falls back to it, with a log line and
a metric, so a Redis outage costs the sharing, never a stream.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from llm_sse_proxy.proxy.routing.choose import LATENCY_ALPHA, LATENCY_HALF_LIFE
from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.routing import Clock, MemoryRouting, RoutingState, Taken, Wanted
from llm_sse_proxy.proxy.state.routing_scripts import SCRIPTS

PREFIX = "llmsse:route:"


class RedisRouting:
    """`RoutingState` in Redis, on the process's one client; `async with` waits for its reports at the end."""

    def __init__(self, redis: SharedRedis, *, clock: Clock = time.monotonic) -> None:
        self.redis = redis
        self.local = MemoryRouting(clock)
        self._scripts: dict[str, AsyncScript] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def take(self, wanted: Wanted) -> Taken | float:
        keys, args = _take_call(wanted)
        try:
            reply = await self._scripts["take"](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._failed("routing_take", exc)
            return await self.local.take(wanted)
        position, index = int(reply[0]), int(reply[1])
        if position < 0:
            return index / 1000 if index >= 0 else math.inf
        model = wanted.chain[position]
        report = bool(int(reply[2])) or not int(reply[3]) or model.measures_latency
        return Taken(position, index, args[1], probe=bool(int(reply[2])), report=report)

    def first_token(self, deployment: Deployment, taken: Taken, ttft: float) -> None:
        self.local.first_token(deployment, taken, ttft)
        args = [round(ttft * 1000, 3), LATENCY_HALF_LIFE * 1000, LATENCY_ALPHA]
        self._spawn("routing_first_token", "first_token", [_key(deployment, "state")], args)

    def failed(self, deployment: Deployment, taken: Taken, model: ModelRoute, hold: float | None) -> None:
        self.local.failed(deployment, taken, model, hold)
        breaker = model.breaker
        args = [math.ceil((hold or 0) * 1000), breaker.failures, breaker.window * 1000, breaker.open_for * 1000]
        self._spawn("routing_failed", "failed", [_key(deployment, "state")], args)

    def release(self, deployment: Deployment, taken: Taken, tokens: int) -> None:
        self.local.release(deployment, taken, tokens)
        keys = [_key(deployment, "state"), _key(deployment, "busy"), _key(deployment, "tpm")]
        self._spawn("routing_release", "release", keys, [taken.lease, tokens, int(taken.probe)])

    def open_breakers(self) -> list[tuple[str, str, bool]]:
        return self.local.open_breakers()  # told the same news as Redis, by this process's requests

    async def drained(self) -> None:
        """Wait until every report sent so far has landed (tests, and the end of the lifespan)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> RedisRouting:
        self._scripts = {name: self.redis.client.register_script(body) for name, body in SCRIPTS.items()}
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.drained()  # the client is the process's: the lifespan closes it after this

    def _spawn(self, operation: str, script: str, keys: list[str], args: list[Any]) -> None:
        if not self._scripts:
            return  # not opened (or closed): nothing to report to
        task = asyncio.get_running_loop().create_task(self._report(operation, script, keys, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, operation: str, script: str, keys: list[str], args: list[Any]) -> None:
        try:
            await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._failed(operation, exc)

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.redis.failed(operation, exc, "this process's own routing state is used")


def _take_call(wanted: Wanted) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    args: list[Any] = [math.ceil(wanted.lease * 1000), secrets.token_hex(8), random.random(), random.random(),
                       LATENCY_HALF_LIFE * 1000, len(wanted.positions)]
    for position in wanted.positions:
        model = wanted.chain[position]
        allowed = [(i, d) for i, d in enumerate(model.deployments) if d.key not in wanted.exclude]
        args += [model.strategy, position, len(allowed)]
        for index, deployment in allowed:
            keys += [_key(deployment, part) for part in ("state", "busy", "rpm", "tpm")]
            args += [index, deployment.weight, deployment.rpm or 0, deployment.tpm or 0, int(deployment.key in wanted.avoid)]
    return keys, args


def _key(deployment: Deployment, part: str) -> str:
    return f"{PREFIX}{deployment.key}:{part}"


def routing_state_for(redis: SharedRedis | None, clock: Clock = time.monotonic) -> RoutingState:
    """This process's routing state, or the replicas' shared one on the process's Redis client."""
    if redis is None:
        return MemoryRouting(clock)
    return RedisRouting(redis, clock=clock)
