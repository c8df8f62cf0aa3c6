"""The frames of the streams this process generates, kept after Redis committed them, for its own readers.

A reader on the owning replica (the usual case: the client that started the stream, or came back to
the same replica) is served from here, so a chunk costs one pipelined APPEND and no `XREAD` per
reader. Frames are added only once their APPEND succeeded (commit, then deliver), so a local reader
never sees a frame that REAP could contradict. When the owner loses the stream (fenced, or Redis
failed) the tail is closed and its readers go on from Redis, where REAP or the outage tells them how
it ended. The same caps as in Redis trim it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from llm_sse_proxy.proxy.resume.errors import ResumeGap

Alive = Callable[[], Awaitable[bool]]


@dataclass(slots=True, eq=False)
class Tail:
    max_events: int
    max_bytes: int
    frames: list[bytes] = field(default_factory=list)
    first_seq: int = 1
    size: int = 0
    ended: bool = False  # the terminal frame is in
    closed: bool = False  # the owner lost the stream: readers must go on from Redis
    waiters: list[asyncio.Future[bool]] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.frames) - 1

    def add(self, first_seq: int, frames: Sequence[bytes], *, end: bool = False) -> None:
        """Keep committed frames; a retried batch's frames, already here, are skipped."""
        for i, frame in enumerate(frames):
            if first_seq + i == self.last_seq + 1:
                self.frames.append(frame)
                self.size += len(frame)
        self.ended = end
        if len(self.frames) > self.max_events or self.size > self.max_bytes:
            self._trim()
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def after(self, seq: int, *, idle: float, alive: Alive) -> AsyncIterator[tuple[int, bytes]]:
        """(seq, frame) after `seq`, live, until the terminal, until the tail is closed, or until a wait of
        `idle` seconds finds `alive()` false (the owner stopped renewing its lease: Redis tells the rest)."""
        while True:
            if seq + 1 < self.first_seq:
                raise ResumeGap("this reader fell behind the frames the stream keeps")
            if seq < self.last_seq:
                seq += 1
                yield seq, self.frames[seq - self.first_seq]
            elif self.ended or self.closed:
                return
            else:
                if not await self._wait(idle) and not await alive():
                    return

    async def _wait(self, timeout: float) -> bool:
        """Until the next add or close (True), or `timeout` seconds (False). A timer handle, not
        asyncio.wait: this runs once per chunk per reader."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.waiters.append(waiter)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _trim(self) -> None:
        # As the APPEND script does: down to 9/10 of the caps, the last frame always kept.
        keep_events, keep_bytes = self.max_events * 9 // 10, self.max_bytes * 9 // 10
        drop, size, count = 0, self.size, len(self.frames)
        while drop < count - 1 and (count - drop > keep_events or size > keep_bytes):
            size -= len(self.frames[drop])
            drop += 1
        del self.frames[:drop]
        self.size, self.first_seq = size, self.first_seq + drop

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
