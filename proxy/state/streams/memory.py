"""`MemoryStore`: the `StreamStore` of one process, the default.

Each stream is a list of frames plus the seq of its first one; appending wakes the readers that wait
(a future each, so an append with no waiting reader allocates nothing). Timers, not tasks, do the
waiting: one per running stream for grace (no reader present), and one for all finished streams, which
expire in the order they finished (retention is the same for all).
The memory budget counts frame bytes. At the budget, finished streams are dropped oldest-first, and a
new stream is refused (503) if that is not enough; a running stream is trimmed only by its own caps.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import partial

from llm_sse_proxy.proxy.resume.errors import (
    CursorAhead, Fenced, ResumeGap, StoreUnavailable, StreamExists, StreamNotFound,
)
from llm_sse_proxy.proxy.state.streams.store import (
    Lease, OnStop, StopCause, StreamLimits, StreamMeta, StreamState, StreamStatus, Unwatch,
)


@dataclass(frozen=True, slots=True)
class MemoryLimits(StreamLimits):
    budget: int = 256 * 1024 * 1024  # frame bytes in all streams; past it new streams are refused


class _Cursor:
    """Where an attached reader is: the seq it sent last. The caps never drop a frame it still needs."""

    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq


@dataclass(slots=True, eq=False)
class _Stream:
    """One stream. Once finished it is one object the garbage collector tracks (issue 27): its frames a
    tuple (untracked, as it holds bytes only), no timer of its own, and the containers that only a
    running or read stream needs are None while empty."""

    sid: str
    owner: str  # StreamMeta.owner; the meta object itself is not kept
    token: str
    label: str = ""  # StreamMeta.label, for `labelled` (the UI stream door's chat id)
    frames: list[bytes] | tuple[bytes, ...] = field(default_factory=list)  # a tuple once finished
    first_seq: int = 1
    size: int = 0
    state: StreamState = "running"
    reason: str | None = None
    stop_requested: bool = False
    readers: set[_Cursor] | None = None
    waiters: list[asyncio.Future[None]] | None = None
    cause: StopCause | None = None
    on_stop: list[OnStop] | None = None  # each told `cause` once, when it is set
    timer: asyncio.TimerHandle | None = None  # grace, while running
    expires: float = 0.0  # the loop's time at which a finished stream is forgotten

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.frames) - 1

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def status(self) -> StreamStatus:
        return StreamStatus(self.sid, self.state, self.owner, self.first_seq, self.last_seq, self.reason,
                            self.stop_requested)


class MemoryStore:
    batches_appends = False  # an append is a list extend: nothing to wait for, nothing to batch

    def __init__(self, limits: MemoryLimits = MemoryLimits()) -> None:
        self.limits = limits
        self._streams: dict[str, _Stream] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()  # oldest first: dropped first at the budget
        self._sweeper: asyncio.TimerHandle | None = None  # forgets the oldest finished streams at their expiry
        self._size = 0
        self._labels: dict[str, str] = {}  # label -> the newest stream created with it

    @property
    def size(self) -> int:
        """Frame bytes held, in all streams."""
        return self._size

    async def create(self, sid: str, meta: StreamMeta) -> Lease:
        if sid in self._streams:
            raise StreamExists("a stream with this id exists")
        self._make_room()
        stream = self._streams[sid] = _Stream(sid, meta.owner, secrets.token_urlsafe(8), meta.label)
        self._start_grace(stream)
        if meta.label:
            self._labels[meta.label] = sid
        return Lease(sid, stream.token)

    async def append(self, lease: Lease, first_seq: int, frames: Sequence[bytes]) -> int:
        stream = self._owned(lease)
        last = stream.last_seq
        if first_seq <= last:
            return last  # a retried batch
        if first_seq != last + 1:
            raise ValueError(f"append at seq {first_seq} after {last}")
        self._add(stream, frames)
        return stream.last_seq

    async def finish(self, lease: Lease, seq: int, frame: bytes, reason: str) -> None:
        stream = self._streams.get(lease.sid)
        if stream is not None and stream.state == "finished" and stream.token == lease.token and seq <= stream.last_seq:
            return  # a retried finish
        stream = self._owned(lease)
        if seq != stream.last_seq + 1:
            raise ValueError(f"finish at seq {seq} after {stream.last_seq}")
        stream.state, stream.reason = "finished", reason
        self._add(stream, (frame,))
        self._cancel_timer(stream)
        stream.frames, stream.on_stop = tuple(stream.frames), None
        loop = asyncio.get_running_loop()
        stream.expires = loop.time() + self.limits.retention
        self._finished[stream.sid] = None  # in finishing order, which is expiry order: one timer sweeps them
        if self._sweeper is None:
            self._sweeper = loop.call_at(stream.expires, self._sweep)

    async def read(self, sid: str, after: int) -> AsyncIterator[bytes]:
        stream = self._readable(sid, after)
        cursor = _Cursor(after)
        self._attach(stream, cursor)
        try:
            seq = after
            while True:
                if seq < stream.last_seq:
                    seq += 1
                    yield stream.frames[seq - stream.first_seq]
                    cursor.seq = seq
                elif stream.state == "finished" or self._streams.get(sid) is not stream:
                    return
                else:
                    await _next_frame(stream)
        finally:
            self._detach(stream, cursor)

    async def read_batches(self, sid: str, after: int) -> AsyncIterator[Sequence[bytes]]:
        """As `read`, but each step is every frame ready then, in order: a reader sends them in one write
        (proxy/resume/reader.py, issue 27). Each is a copy (a slice): trimming never changes what was handed out."""
        stream = self._readable(sid, after)
        cursor = _Cursor(after)
        self._attach(stream, cursor)
        try:
            seq = after
            while True:
                last = stream.last_seq
                if seq < last:
                    yield stream.frames[seq + 1 - stream.first_seq : last + 1 - stream.first_seq]
                    seq = cursor.seq = last
                elif stream.state == "finished" or self._streams.get(sid) is not stream:
                    return
                else:
                    await _next_frame(stream)
        finally:
            self._detach(stream, cursor)

    async def status(self, sid: str) -> StreamStatus | None:
        stream = self._streams.get(sid)
        return None if stream is None else stream.status()

    async def labelled(self, label: str) -> str | None:
        return self._labels.get(label)

    async def request_stop(self, sid: str) -> StreamStatus:
        stream = self._streams.get(sid)
        if stream is None:
            raise StreamNotFound()
        if stream.state == "running":
            stream.stop_requested = True
            self._signal(stream, "stopped")
        return stream.status()

    async def wait_stop(self, lease: Lease) -> StopCause:
        stopped: asyncio.Future[StopCause] = asyncio.get_running_loop().create_future()
        unwatch = self.watch_stop(lease, lambda cause: stopped.done() or stopped.set_result(cause))
        try:
            return await stopped
        finally:
            unwatch()

    def watch_stop(self, lease: Lease, on_stop: OnStop) -> Unwatch:
        # A callback from the stop endpoint or the grace timer: no task per stream waits for it.
        stream = self._owned(lease)
        if stream.cause is not None:
            on_stop(stream.cause)
            return _nothing
        if stream.on_stop is None:
            stream.on_stop = []
        stream.on_stop.append(on_stop)
        return partial(_discard, stream.on_stop, on_stop)

    async def ready(self) -> str | None:
        if self._size >= self.limits.budget and not self._finished:  # finished streams would make room
            return "the resumable-stream memory budget is full"
        return None

    async def aclose(self) -> None:
        for stream in list(self._streams.values()):
            self._forget(stream)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _readable(self, sid: str, after: int) -> _Stream:
        stream = self._streams.get(sid)
        if stream is None:
            raise StreamNotFound()
        if after > stream.last_seq:
            raise CursorAhead("the cursor is past the stream's last event")
        if after + 1 < stream.first_seq:
            raise ResumeGap("the events after the cursor are no longer kept")
        return stream

    def _owned(self, lease: Lease) -> _Stream:
        stream = self._streams.get(lease.sid)
        if stream is None or stream.token != lease.token or stream.state != "running":
            raise Fenced("the stream is no longer this writer's")
        return stream

    def _add(self, stream: _Stream, frames: Sequence[bytes]) -> None:
        added = sum(len(f) for f in frames)
        stream.frames.extend(frames)
        stream.size += added
        self._size += added
        if len(stream.frames) > self.limits.max_events or stream.size > self.limits.max_bytes:
            self._trim(stream)
        stream.wake()

    def _trim(self, stream: _Stream) -> None:
        # Drop a tenth at once, so a stream at its cap does not shift its list on every append. A frame an
        # attached reader has not sent yet stays: that reader is bounded by its send timeout instead.
        keep_events = self.limits.max_events * 9 // 10
        keep_bytes = self.limits.max_bytes * 9 // 10
        droppable = min((c.seq for c in stream.readers or ()), default=stream.last_seq) - stream.first_seq + 1
        drop, size, count = 0, stream.size, len(stream.frames)
        while drop < min(count - 1, droppable) and (count - drop > keep_events or size > keep_bytes):
            size -= len(stream.frames[drop])
            drop += 1
        if drop:
            stream.frames = stream.frames[drop:]  # a list while running, a tuple once finished
        self._size -= stream.size - size
        stream.size = size
        stream.first_seq += drop

    def _make_room(self) -> None:
        while self._size >= self.limits.budget and self._finished:
            self._forget(self._streams[next(iter(self._finished))])
        if self._size >= self.limits.budget:
            raise StoreUnavailable("the resumable-stream memory budget is full; try again shortly", retry_after=5)

    def _sweep(self) -> None:
        """Forget the finished streams whose retention has passed, then wait for the next one's."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        while self._finished:
            stream = self._streams[next(iter(self._finished))]
            if stream.expires > now:
                self._sweeper = asyncio.get_running_loop().call_at(stream.expires, self._sweep)
                return
            self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        if self._streams.get(stream.sid) is not stream:
            return
        self._cancel_timer(stream)
        del self._streams[stream.sid]
        self._finished.pop(stream.sid, None)
        self._size -= stream.size
        if self._labels.get(stream.label) == stream.sid:
            del self._labels[stream.label]
        stream.wake()  # readers see it is gone and end

    def _attach(self, stream: _Stream, cursor: _Cursor) -> None:
        if stream.readers is None:
            stream.readers = set()
        stream.readers.add(cursor)
        if stream.state == "running":
            self._cancel_timer(stream)

    def _detach(self, stream: _Stream, cursor: _Cursor) -> None:
        if stream.readers is not None:
            stream.readers.discard(cursor)
            if not stream.readers:
                stream.readers = None
        if self._streams.get(stream.sid) is not stream:
            return
        if len(stream.frames) > self.limits.max_events or stream.size > self.limits.max_bytes:
            # The frames this reader held back may go now; a finished stream gets no other append that
            # would trim it (issue 26 item 3: a stalled reader's stream kept them all for its retention).
            self._trim(stream)
        if not stream.readers and stream.state == "running":
            self._start_grace(stream)

    def _start_grace(self, stream: _Stream) -> None:
        self._cancel_timer(stream)
        stream.timer = asyncio.get_running_loop().call_later(self.limits.grace, self._signal, stream, "abandoned")

    def _signal(self, stream: _Stream, cause: StopCause) -> None:
        if stream.cause is None:
            stream.cause = cause
            watchers, stream.on_stop = stream.on_stop, None
            for on_stop in watchers or ():
                on_stop(cause)

    @staticmethod
    def _cancel_timer(stream: _Stream) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None


def _nothing() -> None:
    pass


def _discard(watchers: list[OnStop], on_stop: OnStop) -> None:
    if on_stop in watchers:
        watchers.remove(on_stop)


async def _next_frame(stream: _Stream) -> None:
    """Wait for the stream's next frame, or its end (its waiters list exists only while someone waits)."""
    waiter = asyncio.get_running_loop().create_future()
    if stream.waiters is None:
        stream.waiters = []
    stream.waiters.append(waiter)
    await waiter
