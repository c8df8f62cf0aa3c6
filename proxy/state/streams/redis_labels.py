"""The Redis store's labels (`StreamStore.labelled`): `llmsse:label:<label>` holds the id of the newest stream
created with that label, a door's name for it (a chat id, hashed with its owner).

A label outlives no stream for long and no stream outlives its label: it is set with the running streams' TTL at
create, renewed by the owner's heartbeat once half of that TTL is gone (one round trip every few minutes per
stream, not one per beat), and given `retention` at finish. Every change is PEXPIRE GT, which never shortens a
TTL: a newer stream that took the label over keeps its own. Callers check the stream's status anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from redis.asyncio import Redis


class Labels:
    """The labels of the streams this process owns while they run, and the lookups of anyone's."""

    def __init__(self, redis: Redis, running_ttl_ms: int, errors: Callable[[str], AbstractContextManager[None]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.errors = errors  # the store's: a Redis failure is StoreUnavailable, counted as `stream_<operation>`
        self.running_ttl_ms = running_ttl_ms
        self.clock = clock
        self._owned: dict[str, tuple[str, float]] = {}  # sid -> (label, when its TTL is half gone)

    async def set(self, sid: str, label: str) -> None:
        with self.errors("create"):
            await self.redis.set(_key(label), sid, px=self.running_ttl_ms)
        self._owned[sid] = (label, self._half_life())

    async def renew(self, sid: str) -> None:
        """At the owner's heartbeat: keep a long-running stream's label."""
        owned = self._owned.get(sid)
        if owned is not None and self.clock() >= owned[1]:
            with self.errors("renew"):
                await self.redis.pexpire(_key(owned[0]), self.running_ttl_ms, gt=True)
            self._owned[sid] = (owned[0], self._half_life())

    async def finish(self, sid: str, retention_ms: int) -> None:
        owned = self._owned.pop(sid, None)
        if owned is not None:
            with self.errors("finish"):
                await self.redis.pexpire(_key(owned[0]), retention_ms, gt=True)

    async def get(self, label: str) -> str | None:
        with self.errors("status"):
            sid = await self.redis.get(_key(label))
        return sid.decode() if sid is not None else None

    def _half_life(self) -> float:
        return self.clock() + self.running_ttl_ms / 2000


def _key(label: str) -> str:
    return f"llmsse:label:{label}"
