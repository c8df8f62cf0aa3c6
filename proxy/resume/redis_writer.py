"""One round trip for many streams' writes: the calls that arrive while a pipeline is in flight go
together in the next one (resumable-streams.md section 5.1: batches grow with load, no timer).

At one stream the batch is one call and nothing waits; at a thousand streams, each flush carries the
appends of every stream that produced a chunk meanwhile. Scripts are called by SHA; after a Redis
restart (which forgets them) the refused calls are sent once more with the script loaded again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError


@dataclass(slots=True)
class _Call:
    sha: str
    body: str
    keys: list[str]
    args: list[Any]
    result: asyncio.Future[Any]


class PipelinedWriter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self.flushes = 0  # pipelines sent, and calls in them: for the bench and the tests
        self.calls = 0

    async def call(self, sha: str, body: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script call in the next pipeline; raise what the call raised (ResponseError too)."""
        loop = asyncio.get_running_loop()
        call = _Call(sha, body, keys, args, loop.create_future())
        self._pending.append(call)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all())
        return await call.result

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        for call in self._pending:
            call.result.cancel()

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._send(batch)
            except (RedisError, OSError) as exc:
                _fail(batch, exc)
            except asyncio.CancelledError:
                for call in batch:
                    call.result.cancel()
                raise

    async def _send(self, batch: list[_Call]) -> None:
        results = await self._pipeline(batch)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            for body in {batch[i].body for i in missing}:
                await self.redis.script_load(body)
            for i, result in zip(missing, await self._pipeline([batch[i] for i in missing])):
                results[i] = result
        for call, result in zip(batch, results):
            if call.result.done():
                continue  # its caller was cancelled
            if isinstance(result, Exception):
                call.result.set_exception(result)
            else:
                call.result.set_result(result)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        self.flushes += 1
        self.calls += len(batch)
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.evalsha(call.sha, len(call.keys), *call.keys, *call.args)
            return await pipe.execute(raise_on_error=False)


def _fail(batch: list[_Call], exc: BaseException) -> None:
    for call in batch:
        if not call.result.done():
            call.result.set_exception(exc)
