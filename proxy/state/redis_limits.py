"""Rate buckets, stream slots and used stream tokens in Redis, shared by every replica.

Each check is one round trip: a Lua script does the read-modify-write atomically on the server and
reads the server's clock (`TIME`), so replicas with skewed clocks still share one exact bucket.

- Rate: a hash per client (`tokens`, `ts` in ms), the same token bucket as `RateLimiter`, with a TTL
  of the time it takes to refill (a forgotten bucket is a full one).
- Stream slots: a sorted set per client whose members are slot ids scored by their lease's end. A
  replica renews the slots it holds every `lease / 3`; the slots of a replica that died expire with
  their lease, so a crash cannot leak a client's slots for longer than `lease`.
  The proxy-wide `max_streams` stays per process: it protects this process's memory and CPU.
- Tokens: `SET llmsse:token:<nonce> 1 NX PX <until the token expires>`; refused if already there.

Redis down or silent: every request that needs it gets 503 `store_unavailable` after at most about
two seconds (proxy/state/redis.py: the process's one client), with a log line and a metric. Failing
closed keeps a replayed token from getting through and the limits from silently becoming N times looser.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from llm_sse_proxy.proxy.admission.auth import ALREADY_USED, Clock
from llm_sse_proxy.proxy.errors import TooManyRequests, Unauthorized
from llm_sse_proxy.proxy.admission.limits import STREAM_RETRY_AFTER, StreamGates
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.limits import Leave

PREFIX = "llmsse:"
SLOT_LEASE_MS = 30_000

_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# KEYS[1] bucket; ARGV: tokens per ms, burst. Returns the ms to wait ("0" when the request may go).
TAKE = _NOW_MS + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate else tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return tostring(wait)
"""

# KEYS[1] the client's slots; ARGV: limit, slot id, lease ms. Returns -1 when entered, else the open count.
ENTER = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[1]) then return open end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return -1
"""

# KEYS[1] the client's slots; ARGV: lease ms, then the slot ids still held. XX: a slot given back
# while this call was on its way is not brought back to life.
RENEW = _NOW_MS + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease)
return 0
"""

SCRIPTS = {"take": TAKE, "enter": ENTER, "renew": RENEW}


class RedisLimits:
    """`SharedLimits` in Redis; `async with` starts the slot renewer and stops it (the client is the app's)."""

    def __init__(
        self,
        redis: SharedRedis,
        *,
        per_minute: float,
        burst: int,
        per_client: int,
        total: int,
        lease_ms: int = SLOT_LEASE_MS,
        clock: Clock = time.time,
    ) -> None:
        self.redis = redis
        self.rate_per_ms = per_minute / 60_000
        self.burst = burst
        self.per_client = per_client
        self.local = StreamGates(per_client=total, total=total)  # max_streams is per process
        self.lease_ms = lease_ms
        self.clock = clock
        self._held: dict[str, str] = {}  # slot id -> client
        self._tasks: set[asyncio.Task[None]] = set()
        self._scripts: dict[str, AsyncScript] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    async def take(self, client: str) -> None:
        with self.redis.failures("rate"):
            reply = await self._scripts["take"](keys=[f"{PREFIX}rate:{client}"], args=[self.rate_per_ms, self.burst])
        wait_ms = float(reply)
        if wait_ms > 0:
            retry_after = max(1, math.ceil(wait_ms / 1000))
            raise TooManyRequests(f"over {self.rate_per_ms * 60_000:g} requests per minute", retry_after=retry_after)

    async def enter(self, client: str, limit: int | None = None) -> Leave:
        leave_local = self.local.enter(client)  # 503 when this process is full, before asking Redis
        slot = secrets.token_hex(8)
        open_now = 0
        try:
            with self.redis.failures("gate"):
                args = [min(self.per_client, limit or self.per_client), slot, self.lease_ms]
                open_now = int(await self._scripts["enter"](keys=[_slots(client)], args=args))
        finally:
            if open_now >= 0:  # refused, failed or cancelled: give the process slot back
                leave_local()
        if open_now >= 0:
            raise TooManyRequests(f"this client already has {open_now} open streams",
                                  retry_after=STREAM_RETRY_AFTER, type_="too_many_streams")
        self._held[slot] = client

        def leave() -> None:
            if self._held.pop(slot, None) is not None:
                leave_local()
                self._spawn(self._release(client, slot))

        return leave

    async def spend_token(self, nonce: str, expires: int) -> None:
        keep_ms = max(1000, math.ceil((expires - self.clock()) * 1000) + 1000)
        with self.redis.failures("token"):
            first = await self.redis.client.set(f"{PREFIX}token:{nonce}", 1, nx=True, px=keep_ms)
        if not first:
            raise Unauthorized(ALREADY_USED)

    async def ready(self) -> str | None:
        return await self.redis.unreachable()

    async def __aenter__(self) -> RedisLimits:
        # EVALSHA, with the script sent again only if the server has not seen it (after a restart).
        self._scripts = {name: self.redis.client.register_script(body) for name, body in SCRIPTS.items()}
        self._renewer = self._spawn(self._renew_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drained(self) -> None:
        """Wait until every slot given back so far is gone from Redis too."""
        pending = [task for task in self._tasks if task is not self._renewer]
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _release(self, client: str, slot: str) -> None:
        try:
            await self.redis.client.zrem(_slots(client), slot)
        except (RedisError, OSError) as exc:
            self.redis.failed("gate_release", exc, "the slot's lease ends it")

    async def _renew_forever(self) -> None:
        # Ends on `_closing` as well as on cancel: on Python 3.11 a cancel that lands as a wait inside
        # the client completes can be swallowed (asyncio.wait_for, gh-86296).
        while not self._closing.is_set():
            try:
                await asyncio.wait_for(self._closing.wait(), self.lease_ms / 3000)
            except TimeoutError:
                pass
            else:
                return
            try:
                await self.renew()
            except (RedisError, OSError) as exc:
                self.redis.failed("gate_renew", exc)

    async def renew(self) -> None:
        """Extend the lease of every slot this process holds: one pipelined round trip."""
        by_client: dict[str, list[str]] = {}
        for slot, client in self._held.items():
            by_client.setdefault(client, []).append(slot)
        if not by_client:
            return
        async with self.redis.client.pipeline(transaction=False) as pipe:
            for client, slots in by_client.items():
                await self._scripts["renew"](keys=[_slots(client)], args=[self.lease_ms, *slots], client=pipe)
            await pipe.execute()


def _slots(client: str) -> str:
    return f"{PREFIX}slots:{client}"
