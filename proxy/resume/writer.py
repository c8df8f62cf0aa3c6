"""The producer's side of a resumable stream: `Writer.emit` numbers each event `<sid>:<seq>`, encodes it
once, and commits it to the store.

A store whose append is a round trip (`store.batches_appends`, Redis) is written in batches: `emit`
queues the frame and returns; the frames emitted while one append is in flight go together in the
next one (one round trip per batch of events, not per event; the batch grows with the store's
latency, with no timer). The queue is bounded (`PendingLimit`): past it the producer waits for the
store, so a slow store slows the upstream read instead of growing memory. A store whose append costs
no I/O (memory) is appended to directly: a queue would only delay its readers.

The batching lives here, not in the store: the store's contract stays "append returns once the frames
are durable" (commit, then deliver, on every replica), and only the writer knows the producer that a
failure must stop and the terminate that must come after every earlier frame.

Guarantees: frames are stored in seq order; the terminate is stored after every earlier frame (the
queue is flushed first); a store failure ends the generation once (the producer is cancelled, nothing
is raised into it, the frames still queued are dropped, as they would have been unsent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from llm_sse_proxy.proxy.errors import ProxyError
from llm_sse_proxy.proxy.resume.errors import StoreError, StoreUnavailable
from llm_sse_proxy.proxy.state.streams.store import Lease, StreamStore
from llm_sse_proxy.proxy.relay.sse import encode_event

# A frame's bytes from its event id (`<sid>:<seq>`), payload and name: the article's SSE by default; a door
# that speaks another protocol gives its own (stateful: one per stream, called in seq order).
EncodeFrame = Callable[[bytes, dict[str, Any], str | None], bytes]


@dataclass(frozen=True, slots=True)
class PendingLimit:
    """How much a batching writer queues behind the append in flight before its producer waits."""

    frames: int = 256  # also the most frames sent in one append
    bytes: int = 1024 * 1024


class Writer:
    """The producer's `emit` for one generation; see the module docstring."""

    def __init__(self, store: StreamStore, lease: Lease, stop: anyio.CancelScope,
                 on_finished: Callable[[], None] = lambda: None, pending: PendingLimit = PendingLimit(),
                 encode: EncodeFrame = encode_event) -> None:
        self.store = store
        self.encode = encode
        self.on_finished = on_finished  # the terminate is stored: the stream is done, though its producer may not be
        self.lease = lease
        self.seq = 0  # the last seq emitted (committed or queued)
        self.finished = False
        self.failure: ProxyError | None = None  # the store error that ended the generation
        self.batched = store.batches_appends
        self.limit = pending
        self._prefix = lease.sid.encode() + b":"
        self._stop = stop
        self._pending: list[bytes] = []  # emitted, not yet stored: seqs committed + 1 ...
        self._pending_bytes = 0
        self._committed = 0
        if self.batched:  # nothing to make per stream for a store appended to at once
            self._appending = asyncio.Lock()  # one append at a time, so batches land in seq order
            self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        """Frames emitted and not yet stored."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    async def emit(self, payload: dict[str, Any], event: str | None = None) -> None:
        if self.failure is not None or self.finished:
            return
        seq = self.seq + 1
        frame = self.encode(self._prefix + b"%d" % seq, payload, event)
        if payload.get("action") == "terminate":
            await self._finish(seq, frame, payload["reason"])
        elif self.batched:
            self.seq = seq
            self._pending.append(frame)
            self._pending_bytes += len(frame)
            self._wake.set()
            if len(self._pending) >= self.limit.frames or self._pending_bytes >= self.limit.bytes:
                await self._flush()  # backpressure: the store is slower than the upstream
        else:
            await self._commit(self.store.append(self.lease, seq, (frame,)))
            if self.failure is None:
                self.seq = self._committed = seq
        if self.failure is not None:
            await anyio.lowlevel.checkpoint()  # the cancel lands here, before the producer goes on

    async def finish(self, payload: dict[str, Any]) -> None:
        """The terminate of a generation its producer did not end itself."""
        if not self.finished and self.failure is None:
            self.on_finished = lambda: None  # the generation reports its own ending (shutdown, cancelled)
            await self.emit(payload)

    async def send_batches(self) -> None:
        """Run beside the producer (batching stores only): send what it queues, batch after batch."""
        while self.failure is None:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _finish(self, seq: int, frame: bytes, reason: str) -> None:
        if self.batched:
            await self._flush()
        if self.failure is None:
            await self._commit(self.store.finish(self.lease, seq, frame, reason))
        if self.failure is None:
            self.seq = self._committed = seq
            self.finished = True
            self.on_finished()

    async def _flush(self) -> None:
        """Store every queued frame (those queued meanwhile too), after the append in flight."""
        async with self._appending:
            while self._pending and self.failure is None:
                batch = self._pending[:self.limit.frames]
                last = await self._commit(self.store.append(self.lease, self._committed + 1, batch))
                if last is None:
                    return
                # A batch cancelled in flight is sent again with what was queued since: if it had landed,
                # the store answers its own last seq without appending, and the rest goes next.
                stored = last - self._committed
                self._pending_bytes -= sum(map(len, self._pending[:stored]))
                del self._pending[:stored]
                self._committed = last

    async def _commit(self, write: Any) -> Any:
        """Await a store write; on a store failure, end the generation (once) and return None."""
        try:
            return await write
        except (StoreError, StoreUnavailable) as exc:
            # Not raised into the producer: it would report it as its own failure and emit again.
            if self.failure is None:
                self.failure = exc
                self._stop.cancel()
            return None
