"""One reader loop per replica for the running streams that other replicas generate (issue 26 item 2).

A reader on a replica that does not generate its stream used to run its own `XREAD BLOCK`, holding a
pooled connection for as long as it waited: 300 readers of one answer took every connection the replica
had. Here the replica's readers of a remote stream share one `Mirror` of it, and one task, the
`Follower`, runs one `XREAD BLOCK` over every mirrored stream on one connection of the process's pool,
fanning each batch of entries out to the mirrors' readers. A stream that gets its first reader here
interrupts the wait (`CLIENT UNBLOCK`), so it is followed at once, not after the current block.

A mirror keeps the frames its slowest reader has not sent yet, within the stream's caps: past them the
oldest go, and a reader they overtake gets `ResumeGap` (as Redis trims for it). A reader whose cursor is
older than the mirror's first frame first pages the rest from Redis (`replay`, no blocking command).
The loop also does for its streams what each reader did: it marks the readers present (one SET per
stream every grace / 4, not one per reader), and after a wait of `block` with nothing new it checks that
the owner lives (REAP writes `owner_lost` if not). Commit-then-deliver holds: every frame comes from Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from llm_sse_proxy.proxy.resume.errors import ResumeGap, StoreUnavailable
from llm_sse_proxy.proxy.state.redis import COMMAND_TIMEOUT, SharedRedis

READ_BATCH = 256  # entries per stream per XREAD: a replay is paged, never read in one piece
WAKE_TRIES = 20  # CLIENT UNBLOCK attempts when it lands before the XREAD it should end (5 ms apart)

Entries = list[tuple[int, dict[bytes, bytes]]]
Replay = Callable[[str, int, int], Awaitable[Entries]]  # (sid, after, up to): entries after `after`, one page
Check = Callable[[str], Awaitable[bool]]  # after an idle wait: False if the stream is gone (REAP as needed)
MarkPresent = Callable[[list[str]], Awaitable[None]]


class _Cursor:
    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq


@dataclass(slots=True, eq=False)
class Mirror:
    """The frames of one remote stream that this replica's readers have not all sent yet."""

    key: bytes  # the stream's events key
    fetched: int  # the last seq read from Redis
    max_events: int
    max_bytes: int
    frames: list[bytes] = field(default_factory=list)
    first_seq: int = 0  # the seq of frames[0]
    size: int = 0
    ended: bool = False  # the terminal frame is in
    gone: bool = False  # the stream expired while followed: readers end
    failure: StoreUnavailable | None = None
    readers: set[_Cursor] = field(default_factory=set)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    idle_since: float = 0.0  # the loop's time of its last entry or owner check

    def __post_init__(self) -> None:
        self.first_seq = self.fetched + 1

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.frames) - 1

    def add(self, entries: Entries) -> None:
        for seq, fields in entries:
            if seq <= self.fetched:
                continue
            if seq != self.fetched + 1:  # Redis trimmed past this mirror's cursor: a gap for who needs it
                self.frames, self.size, self.first_seq = [], 0, seq
            frame = fields[b"f"]
            self.frames.append(frame)
            self.size += len(frame)
            self.fetched = seq
            self.ended = self.ended or b"end" in fields
        self._trim()
        self.wake()

    def end(self, *, gone: bool = False, failure: StoreUnavailable | None = None) -> None:
        self.gone, self.failure = self.gone or gone, self.failure or failure
        self.wake()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        await waiter

    def _trim(self) -> None:
        # What every reader has sent goes; past the caps the oldest go too, even if a slow reader needs them.
        sent = min((c.seq for c in self.readers), default=self.last_seq)
        keep_last = len(self.frames) - 1
        drop = max(0, min(sent - self.first_seq + 1, keep_last))
        size = self.size - sum(map(len, self.frames[:drop]))
        while drop < keep_last and (len(self.frames) - drop > self.max_events or size > self.max_bytes):
            size -= len(self.frames[drop])
            drop += 1
        if drop:
            del self.frames[:drop]
            self.first_seq, self.size = self.first_seq + drop, size


class Follower:
    """The one `XREAD BLOCK` loop of this replica, and its mirrors; see the module docstring."""

    def __init__(self, redis: SharedRedis, *, block: float, grace: float, max_events: int, max_bytes: int,
                 events_key: Callable[[str], str], replay: Replay, check: Check, mark_present: MarkPresent) -> None:
        self.redis = redis
        self.block = min(block, grace / 4)  # the loop also refreshes presence, every grace / 4
        self.grace = grace
        self.caps = (max_events, max_bytes)
        self.events_key = events_key
        self.replay = replay
        self.check = check
        self.mark_present = mark_present
        self.mirrors: dict[str, Mirror] = {}
        self.reads = 0  # XREADs sent: for the tests
        self._task: asyncio.Task[None] | None = None
        self._client_id: int | None = None  # the loop's connection, for CLIENT UNBLOCK
        self._in_flight: set[str] | None = None  # the streams of the XREAD waiting now
        self._marked = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, sid: str, after: int) -> AsyncIterator[bytes]:
        """The frames after `after` of a running stream generated elsewhere, to its terminal."""
        mirror = self.mirrors.get(sid)
        if mirror is None or mirror.ended or mirror.gone or mirror.failure is not None:
            mirror = self._follow(sid, after)
        cursor = _Cursor(after)
        mirror.readers.add(cursor)
        try:
            async for frame in self._catch_up(sid, mirror, cursor):
                yield frame
            async for frame in self._live(mirror, cursor):
                yield frame
        finally:
            mirror.readers.discard(cursor)
            if not mirror.readers and self.mirrors.get(sid) is mirror:
                del self.mirrors[sid]
                if not (mirror.ended or mirror.gone):
                    self._spawn(self.mark_present([sid]))  # grace counts from the moment the last reader left
                if not self.mirrors:
                    self._spawn(self._wake())  # the loop ends now and gives its connection back

    async def aclose(self) -> None:
        for mirror in self.mirrors.values():
            mirror.end(gone=True)
        self.mirrors.clear()
        tasks = [*self._tasks, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _catch_up(self, sid: str, mirror: Mirror, cursor: _Cursor) -> AsyncIterator[bytes]:
        """From Redis, the frames older than the mirror's first one (its cursor keeps it from trimming more)."""
        while cursor.seq + 1 < mirror.first_seq:
            entries = await self.replay(sid, cursor.seq, mirror.first_seq - 1)
            if not entries or entries[0][0] != cursor.seq + 1:
                raise ResumeGap("the events after the cursor are no longer kept")
            for seq, fields in entries:
                yield fields[b"f"]
                cursor.seq = seq

    @staticmethod
    async def _live(mirror: Mirror, cursor: _Cursor) -> AsyncIterator[bytes]:
        while True:
            if cursor.seq + 1 < mirror.first_seq:
                raise ResumeGap("this reader fell behind the frames the stream keeps")
            if cursor.seq < mirror.last_seq:
                seq = cursor.seq + 1
                yield mirror.frames[seq - mirror.first_seq]
                cursor.seq = seq
            elif mirror.failure is not None:
                raise mirror.failure
            elif mirror.ended or mirror.gone:
                return
            else:
                await mirror.wait()

    def _follow(self, sid: str, after: int) -> Mirror:
        mirror = self.mirrors[sid] = Mirror(self.events_key(sid).encode(), after, *self.caps,
                                             idle_since=asyncio.get_running_loop().time())
        self._spawn(self.mark_present([sid]))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._in_flight is not None:
            self._spawn(self._wake())
        return mirror

    async def _wake(self) -> None:
        """End the XREAD in flight so that the next one includes a new stream (or, with none left, so that
        the loop ends). An UNBLOCK that reaches Redis before that XREAD finds nothing to end: then it is
        sent again, a few times."""
        for _ in range(WAKE_TRIES):
            flight, client_id = self._in_flight, self._client_id
            if flight is None or client_id is None or (self.mirrors and set(self.mirrors) <= flight):
                return  # nothing waits, or what waits covers every followed stream
            try:
                if await self.redis.client.execute_command("CLIENT", "UNBLOCK", client_id):
                    return
            except (RedisError, OSError) as exc:
                self.redis.failed("stream_follow_wake", exc, "the new stream is followed after the current wait")
                return
            await asyncio.sleep(0.005)

    async def _run(self) -> None:
        connection = None
        try:
            connection = await self.redis.hold_connection()
            await connection.send_command("CLIENT", "ID")
            self._client_id = int(await connection.read_response())
            while self.mirrors:
                await self._read_once(connection)
        except (RedisError, OSError, StoreUnavailable) as exc:
            if not isinstance(exc, StoreUnavailable):
                self.redis.failed("stream_read", exc)
            failure = StoreUnavailable("the proxy's shared state (Redis) is unavailable; try again shortly")
            for mirror in self.mirrors.values():
                mirror.end(failure=failure)
            self.mirrors.clear()
        finally:
            # Before any await: a reader that comes meanwhile must start a new loop, not count on this one.
            self._in_flight = self._client_id = None
            if self._task is asyncio.current_task():
                self._task = None
            if connection is not None:
                await self.redis.give_back(connection)

    async def _read_once(self, connection: Any) -> None:
        followed = dict(self.mirrors)
        keys = [mirror.key for mirror in followed.values()]
        ids = [b"%d-0" % mirror.fetched for mirror in followed.values()]
        await connection.send_command("XREAD", "COUNT", READ_BATCH, "BLOCK", max(1, round(self.block * 1000)),
                                      "STREAMS", *keys, *ids)
        self._in_flight = set(followed)
        self.reads += 1
        try:
            reply = await connection.read_response(timeout=self.block + COMMAND_TIMEOUT)
        finally:
            self._in_flight = None
        now = asyncio.get_running_loop().time()
        by_key = {mirror.key: mirror for mirror in followed.values()}
        for key, entries in _streams_of(reply):
            mirror = by_key[key]
            mirror.add([(int(entry_id.split(b"-", 1)[0]), _fields(values)) for entry_id, values in entries])
            mirror.idle_since = now
        await self._after_wait(followed, now)

    async def _after_wait(self, followed: dict[str, Mirror], now: float) -> None:
        for sid, mirror in followed.items():
            if mirror.ended:
                if self.mirrors.get(sid) is mirror:
                    del self.mirrors[sid]  # its readers finish from the mirror
            elif now - mirror.idle_since >= self.block:
                mirror.idle_since = now
                if not await self.check(sid):
                    mirror.end(gone=True)
                    self.mirrors.pop(sid, None)
        if now - self._marked >= self.grace / 4 and self.mirrors:
            self._marked = now
            await self.mark_present(list(self.mirrors))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _streams_of(reply: Any) -> list[tuple[bytes, list[Any]]]:
    """XREAD's reply as (key, entries) pairs: a map in RESP3, a list of pairs in RESP2, None after a wait."""
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else [(key, entries) for key, entries in reply]


def _fields(values: list[bytes]) -> dict[bytes, bytes]:
    """An entry's raw field list [f1, v1, f2, v2...] as a dict."""
    return dict(zip(values[::2], values[1::2]))
