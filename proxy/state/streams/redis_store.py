"""`RedisStore`: the `StreamStore` of replicas that share one Redis (resume.store: redis).

One Redis Stream per generation, with explicit entry ids `<seq>-0`, an owner lease and fenced Lua
writes (proxy/state/streams/redis_scripts.py), as resumable-streams.md sections 3-5 describe. The appends of
all streams share one pipelined round trip (proxy/state/streams/redis_writer.py). Readers on the replica that
generates the stream are served from its in-process tail of committed frames (proxy/state/streams/redis_tails.py).
Departures from the brief:
- readers on another replica share one mirror per stream, fed by that replica's one `XREAD BLOCK` loop
  (proxy/state/streams/redis_follower.py), which also marks them present and checks the owner's lease;
  a finished stream is paged with XRANGE. Commit-then-deliver holds everywhere: no reader ever sees a
  frame Redis has not committed.
- stop is a flag the owner sees at its next heartbeat (at most `heartbeat` seconds, 1 s by default), and
  a message on its replica's channel (`llmsse:stop:<replica>`, one subscription per process) that makes it
  prompt: pub/sub is at-most-once, so the flag stays the guarantee and the message only the fast path.
Liveness: a followed stream with nothing new for `block` seconds has its lease checked; if the owner is gone
REAP writes the terminal `error`/`owner_lost` at last + 1 (idempotent, first caller wins). So a reader
waits at most lease + block for a dead owner, never forever.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from llm_sse_proxy.proxy.config import ResumeConfig
from llm_sse_proxy.proxy.state.redis import COMMAND_TIMEOUT, SharedRedis, replica_name
from llm_sse_proxy.proxy.resume.errors import (
    CursorAhead, Fenced, ResumeGap, StoreUnavailable, StreamExists, StreamNotFound,
)
from llm_sse_proxy.proxy.resume.ids import format_id
from llm_sse_proxy.proxy.state.streams.redis_labels import Labels
from llm_sse_proxy.proxy.state.streams.redis_follower import READ_BATCH, Follower
from llm_sse_proxy.proxy.state.streams.redis_scripts import SCRIPTS
from llm_sse_proxy.proxy.state.streams.redis_stops import StopSignals
from llm_sse_proxy.proxy.state.streams.redis_tails import Tail
from llm_sse_proxy.proxy.state.streams.redis_writer import PipelinedWriter
from llm_sse_proxy.proxy.state.streams.store import (
    Lease, OnStop, StopCause, StreamLimits, StreamMeta, StreamStatus, StreamStore, Unwatch,
)
from llm_sse_proxy.proxy.relay.sse import encode_event, terminate_payload

OWNER_LOST = ("owner_lost", "the replica that was generating this answer stopped; ask again")


@dataclass(frozen=True, slots=True)
class RedisStoreLimits(StreamLimits):
    lease: float = 10.0  # seconds an owner that stopped renewing still holds its stream
    block: float = 2.0  # seconds a reader's XREAD waits before it checks that the owner lives
    heartbeat: float = 1.0  # seconds between the owner's lease renewals (stop and abandonment checks)

    @property
    def running_ttl_ms(self) -> int:
        return _ms(self.retention + self.grace)


@dataclass(frozen=True, slots=True)
class _Keys:
    meta: str
    events: str
    lease: str
    readers: str

    @classmethod
    def of(cls, sid: str) -> _Keys:
        base = f"llmsse:{{{sid}}}:"
        return cls(base + "meta", base + "events", base + "lease", base + "readers")

    def all(self) -> list[str]:
        return [self.meta, self.events, self.lease, self.readers]

    @property
    def meta_b(self) -> bytes:
        return self.meta.encode()

    @property
    def events_b(self) -> bytes:
        return self.events.encode()

    @property
    def lease_b(self) -> bytes:
        return self.lease.encode()


class RedisStore:
    batches_appends = True  # an append is a round trip: one per batch of a stream's frames, not per frame

    def __init__(self, shared: SharedRedis, limits: RedisStoreLimits = RedisStoreLimits(), *,
                 replica: str = "") -> None:
        self.limits = limits
        self.replica = replica
        self.shared = shared  # the process's one client (proxy/state/redis.py): the app closes it, not the store
        self.redis = shared.client
        self._scripts: dict[str, AsyncScript] = {name: self.redis.register_script(s) for name, s in SCRIPTS.items()}
        self.writer = PipelinedWriter(shared, COMMAND_TIMEOUT)  # all streams' appends share round trips
        self._append_sha = self._scripts["append"].sha.encode()
        self._stops = StopSignals(shared, replica, poll=limits.block, retry=limits.heartbeat)
        self.follower = Follower(shared, block=limits.block, grace=limits.grace, max_events=limits.max_events,
                                 max_bytes=limits.max_bytes, events_key=lambda sid: _Keys.of(sid).events,
                                 replay=self._replay, check=self._owner_alive_or_reaped,
                                 mark_present=self._mark_all_present)
        self._tails: dict[str, Tail] = {}  # running streams owned here, for their local readers
        self.labels = Labels(self.redis, limits.running_ttl_ms)  # StreamStore.labelled
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_listener: asyncio.Task[None] | None = None  # started with the first stream owned here

    async def create(self, sid: str, meta: StreamMeta) -> Lease:
        token, lim = secrets.token_urlsafe(12), self.limits
        args = [meta.owner, meta.replica or self.replica, token, _ms(lim.lease), _ms(lim.grace), lim.running_ttl_ms,
                lim.max_events, lim.max_bytes]
        if not await self._run("create", sid, args):
            raise StreamExists("a stream with this id exists")
        if meta.label:
            with self._errors("create"):
                await self.labels.set(sid, meta.label)
        if self._stop_listener is None:
            self._stop_listener = self._spawn(self._stops.listen())
        self._tails[sid] = Tail(lim.max_events, lim.max_bytes)
        return Lease(sid, token)

    async def append(self, lease: Lease, first_seq: int, frames: Sequence[bytes]) -> int:
        keys = _Keys.of(lease.sid)
        # Bytes in, so that the client's packing has nothing to encode (it is most of this call's cost).
        args = [keys.meta_b, keys.events_b, keys.lease_b, lease.token.encode(), b"%d" % first_seq, *frames]
        with self._closing_tail_on_failure(lease.sid), self._errors("append"), self._script_errors():
            last = int(await self.writer.call(self._append_sha, self._scripts["append"].script, 3, args))
        if (tail := self._tails.get(lease.sid)) is not None:
            tail.add(first_seq, frames[:last - first_seq + 1])  # a retried batch: only what Redis holds
        return last

    async def finish(self, lease: Lease, seq: int, frame: bytes, reason: str) -> None:
        keys = _Keys.of(lease.sid)
        args = [*keys.all(), lease.token, seq, reason, _ms(self.limits.retention), frame]
        with self._closing_tail_on_failure(lease.sid), self._errors("finish"), self._script_errors():
            await self.writer.call(self._scripts["finish"].sha.encode(), self._scripts["finish"].script, 4, args)
        if (tail := self._tails.pop(lease.sid, None)) is not None:
            tail.add(seq, (frame,), end=True)  # its readers end; new readers replay from Redis
        with self._errors("finish"):
            await self.labels.finish(lease.sid, _ms(self.limits.retention))

    async def labelled(self, label: str) -> str | None:
        with self._errors("status"):
            return await self.labels.get(label)

    async def status(self, sid: str) -> StreamStatus | None:
        keys = _Keys.of(sid)
        with self._errors("status"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.meta, "state", "last", "owner", "reason", "stop")
                pipe.xrange(keys.events, "-", "+", count=1)
                (state, last, owner, reason, stop), oldest = await pipe.execute()
        if state is None:
            return None
        last_seq = int(last)
        first_seq = _seq(oldest[0][0]) if oldest else last_seq + 1
        return StreamStatus(sid, state.decode(), owner.decode(), first_seq, last_seq,
                            reason.decode() if reason else None, stop == b"1")

    async def request_stop(self, sid: str) -> StreamStatus:
        if not await self._run("stop", sid, [sid]):
            raise StreamNotFound()
        self._stops.wake(sid)
        status = await self.status(sid)
        if status is None:
            raise StreamNotFound()
        return status

    async def wait_stop(self, lease: Lease) -> StopCause:
        stopped = self._stops.watch(lease.sid)
        lim = self.limits
        try:
            while True:
                # A heartbeat first, then the renewal: `create` has just set the lease, so a stream shorter
                # than a heartbeat renews nothing (one round trip fewer per stream).
                try:
                    await asyncio.wait_for(stopped.wait(), min(lim.heartbeat, lim.lease / 3))
                    return "stopped"
                except TimeoutError:
                    pass
                with self._closing_tail_on_failure(lease.sid):
                    beat = int(await self._run("renew", lease.sid, [lease.token, _ms(lim.lease), lim.running_ttl_ms]))
                    with self._errors("renew"):
                        await self.labels.renew(lease.sid)
                if beat < 0:
                    self._close_tail(lease.sid)
                    raise Fenced("the stream is no longer this writer's")
                if beat >= 2:
                    return "stopped"
                if beat == 0:
                    return "abandoned"
        finally:
            self._stops.forget(lease.sid, stopped)

    def watch_stop(self, lease: Lease, on_stop: OnStop) -> Unwatch:
        watching = True

        async def watch() -> None:
            try:
                cause: StopCause | Exception = await self.wait_stop(lease)
            except (Fenced, StoreUnavailable) as exc:
                cause = exc
            if watching:
                on_stop(cause)

        task = self._spawn(watch())

        def unwatch() -> None:
            nonlocal watching
            watching = False
            task.cancel()
            self._stops.wake(lease.sid)  # ends the heartbeat even if its wait_for swallowed the cancel (gh-86296)

        return unwatch

    async def read(self, sid: str, after: int) -> AsyncIterator[bytes]:
        tail = self._tails.get(sid)
        if tail is not None and after > tail.last_seq:
            raise CursorAhead("the cursor is past the stream's last event")
        keys, left = _Keys.of(sid), asyncio.Event()
        presence: asyncio.Task[None] | None = None
        try:
            cursor = after
            if tail is not None and after + 1 >= tail.first_seq:
                presence = self._spawn(self._present(keys, left))
                alive = partial(self._lease_alive, keys)
                async for cursor, frame in tail.after(after, idle=self.limits.block, alive=alive):
                    yield frame
                if tail.ended:
                    return
            # Not generated here, or its owner here lost it: Redis has the rest, REAP's terminal included.
            async for frame in self._read_remote(sid, cursor):
                yield frame
        finally:
            left.set()
            if presence is not None:
                presence.cancel()
                self._spawn(self._mark_present(keys))  # grace counts from the moment the last reader left

    async def _read_remote(self, sid: str, after: int) -> AsyncIterator[bytes]:
        status = await self.status(sid)
        if status is None:
            raise StreamNotFound()
        if after > status.last_seq:
            raise CursorAhead("the cursor is past the stream's last event")
        if after + 1 < status.first_seq:
            raise ResumeGap("the events after the cursor are no longer kept")
        if status.state == "running":
            async for frame in self.follower.read(sid, after):  # this replica's one XREAD loop
                yield frame
            return
        cursor = after
        while cursor < status.last_seq:  # finished: all of it is in Redis, paged without blocking
            entries = await self._replay(sid, cursor, status.last_seq)
            if not entries or entries[0][0] != cursor + 1:
                raise ResumeGap("the events after the cursor are no longer kept")
            for cursor, fields in entries:
                yield fields[b"f"]

    async def ready(self) -> str | None:
        return await self.shared.unreachable()

    async def aclose(self) -> None:
        self._stops.wake_all()
        for sid in list(self._tails):
            self._close_tail(sid)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.follower.aclose()
        await self.writer.aclose()

    async def _replay(self, sid: str, after: int, last: int) -> list[tuple[int, dict[bytes, bytes]]]:
        """One page of the entries after `after`, up to `last`, without blocking."""
        with self._errors("read"):
            entries = await self.redis.xrange(_Keys.of(sid).events, f"{after + 1}-0", f"{last}-0", count=READ_BATCH)
        return [(_seq(entry_id), fields) for entry_id, fields in entries]

    async def _owner_alive_or_reaped(self, sid: str) -> bool:
        return await self._owner_checked(_Keys.of(sid))

    async def _mark_all_present(self, sids: list[str]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.set(_Keys.of(sid).readers, 1, px=_ms(self.limits.grace))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self.shared.failed("presence", exc, "the next refresh will tell")

    async def _lease_alive(self, keys: _Keys) -> bool:
        with self._errors("read"):
            return bool(await self.redis.exists(keys.lease))

    async def _owner_checked(self, keys: _Keys) -> bool:
        """After an empty wait: False if the stream is gone; else reap it if its owner is dead."""
        with self._errors("read"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.meta, "state", "last")
                pipe.exists(keys.lease)
                (state, last), lease_alive = await pipe.execute()
        if state is None:
            return False
        if state == b"running" and not lease_alive:
            sid = keys.meta.split("{", 1)[1].split("}", 1)[0]
            seq = int(last) + 1
            frame = encode_event(format_id(sid, seq).encode(), terminate_payload("error", error=OWNER_LOST))
            await self._run("reap", sid, [seq, _ms(self.limits.retention), frame])
        return True

    async def _present(self, keys: _Keys, left: asyncio.Event) -> None:
        # Ends on `left` as well as on cancel: on Python 3.11 a cancel that lands as a wait inside the
        # client completes can be swallowed (asyncio.wait_for, gh-86296), and this loop must not outlive
        # its reader, or the stream would never be abandoned.
        while not left.is_set():
            await self._mark_present(keys)
            try:
                await asyncio.wait_for(left.wait(), self.limits.grace / 4)
            except TimeoutError:
                continue

    async def _mark_present(self, keys: _Keys) -> None:
        try:
            await self.redis.set(keys.readers, 1, px=_ms(self.limits.grace))
        except (RedisError, OSError) as exc:
            self.shared.failed("presence", exc, "the next refresh or the reader's own read will tell")

    async def _run(self, name: str, sid: str, args: list[Any]) -> Any:
        with self._errors(name), self._script_errors():
            return await self._scripts[name](keys=_Keys.of(sid).all(), args=args)

    @staticmethod
    @contextmanager
    def _script_errors() -> Iterator[None]:
        """The scripts' own refusals, as the store's exceptions."""
        try:
            yield
        except ResponseError as exc:
            message = str(exc)
            if message.startswith("FENCED"):
                raise Fenced(message.removeprefix("FENCED ")) from None
            if message.startswith("GAP"):
                raise ValueError(message.removeprefix("GAP ")) from None
            raise

    @contextmanager
    def _closing_tail_on_failure(self, sid: str) -> Iterator[None]:
        """The owner lost the stream or Redis failed: its local readers go on from Redis."""
        try:
            yield
        except (Fenced, StoreUnavailable):
            self._close_tail(sid)
            raise

    def _close_tail(self, sid: str) -> None:
        if (tail := self._tails.pop(sid, None)) is not None:
            tail.close()

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        with self.shared.failures(f"stream_{operation}"):
            yield

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


@asynccontextmanager
async def open_redis_store(config: ResumeConfig, redis: SharedRedis | None) -> AsyncIterator[StreamStore]:
    """The `store: redis` backend (proxy/state/streams/backends.py); this process is named by host and pid."""
    assert redis is not None  # ResumeConfig refuses store: redis without a redis_url
    lease = config.owner_lease
    limits = RedisStoreLimits(grace=config.grace, retention=config.retention, max_events=config.max_events_per_stream,
                              max_bytes=config.max_bytes_per_stream, lease=lease, block=min(2.0, lease / 3),
                              heartbeat=min(1.0, lease / 3))
    store = RedisStore(redis, limits, replica=replica_name())
    try:
        yield store
    finally:
        await store.aclose()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


__all__ = ["RedisStore", "RedisStoreLimits", "open_redis_store"]
