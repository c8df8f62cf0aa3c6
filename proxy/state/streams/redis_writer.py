"""One round trip for many streams' writes: the calls that arrive while a pipeline is in flight go
together in the next one (resumable-streams.md section 5.1: batches grow with load, no timer).

At one stream the batch is one call and nothing waits; at a thousand streams, each flush carries the
appends of every stream that produced a chunk meanwhile. Scripts are called by SHA; after a Redis
restart (which forgets them) the refused calls are sent once more with the script loaded again.

The writer keeps one connection of the process's pool and sends each batch on it directly: going through the
pool's pipeline cost about 100 µs per flush (acquire, health check, release) on the per-chunk path.
A batch that fails to send or to answer is sent once more on a new connection: APPEND and FINISH are
idempotent (explicit seqs), so a batch that was partly applied is safe to repeat.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llm_sse_proxy.proxy.state.redis import SharedRedis


@dataclass(slots=True)
class _Call:
    sha: bytes
    body: str
    numkeys: int
    args: list[Any]  # the keys, then the script's arguments
    result: asyncio.Future[Any]


class PipelinedWriter:
    def __init__(self, redis: SharedRedis, reply_timeout: float) -> None:
        self.redis = redis
        self.reply_timeout = reply_timeout
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        self.flushes = 0  # pipelines sent, and calls in them: for the bench and the tests
        self.calls = 0

    async def call(self, sha: bytes, body: str, numkeys: int, args: list[Any]) -> Any:
        """EVALSHA in the next pipeline (`args`: the keys, then the arguments); raise what it raised."""
        loop = asyncio.get_running_loop()
        call = _Call(sha, body, numkeys, args, loop.create_future())
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
        await self._drop_connection()

    async def _flush_all(self) -> None:
        while self._pending:
            # One turn of the loop first: the streams whose last append just returned run now and add
            # their next one to this batch, instead of each waiting for a round trip of its own.
            await asyncio.sleep(0)
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
                await self.redis.client.script_load(body)
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
        packed = None
        for attempt in (1, 2):
            connection = await self._connection()
            packed = packed or connection.pack_commands([(b"EVALSHA", c.sha, c.numkeys, *c.args) for c in batch])
            try:
                await connection.send_packed_command(packed, check_health=False)
                async with asyncio.timeout(self.reply_timeout):  # one timer for the batch, not one per reply
                    return [await _reply(connection) for _ in batch]
            except (RedisConnectionError, RedisTimeoutError, TimeoutError):
                await self._drop_connection()
                if attempt == 2:
                    raise
            except BaseException:
                await self._drop_connection()  # cancelled mid-batch: the replies left would be read as others'
                raise
        raise AssertionError("unreachable")

    async def _connection(self) -> AbstractConnection:
        if self._conn is None:
            self._conn = await self.redis.hold_connection()  # one of the process's pool, counted in its bound
        return self._conn

    async def _drop_connection(self) -> None:
        connection, self._conn = self._conn, None
        if connection is not None:
            await self.redis.give_back(connection)


async def _reply(connection: AbstractConnection) -> Any:
    try:
        return await connection.read_response(timeout=math.inf)  # no timer of its own: the batch has one
    except ResponseError as exc:  # the script's own refusal (FENCED, GAP, NOSCRIPT): the next reply is in sync
        return exc


def _fail(batch: list[_Call], exc: BaseException) -> None:
    for call in batch:
        if not call.result.done():
            call.result.set_exception(exc)
