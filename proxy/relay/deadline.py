"""A deadline on upstream reads that costs a float store per chunk, not a timer.

`anyio.CancelScope(deadline=...)` around each read schedules and cancels one event-loop timer per
chunk; in a profile of the relay that was about a tenth of its CPU. Here one timer serves the whole
stream: `arm()` only moves the deadline, and the timer, when it fires early, sleeps again until the
deadline it finds. Semantics are those of a scope per read: the deadline counts only while the relay
waits for the upstream (`arm` .. `pause`), never while it writes to a slow client, and when it passes
the read is cancelled.

The timer is the asyncio loop's own (`call_at`), which is what anyio's scope uses underneath; the
proxy runs on asyncio (uvicorn), and a sync callback needs no task or task group per stream.
"""

from __future__ import annotations

import asyncio
import math

import anyio


class ReadDeadline:
    """Cancels `scope` when a read armed with `arm` outlasts its deadline, or the stream its `cap`."""

    __slots__ = ("scope", "cap", "deadline", "why", "reading", "expired", "_loop", "_timer", "_wake")

    def __init__(self, scope: anyio.CancelScope, *, cap: float) -> None:
        """`cap`: an absolute deadline (on the loop's clock) that no read may pass."""
        self.scope = scope
        self.cap = cap
        self.deadline = math.inf
        self.why = ""
        self.reading = False
        self.expired: str | None = None  # the `why` of the deadline that passed
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._wake = math.inf  # when the timer fires; inf when there is none

    def now(self) -> float:
        return self._loop.time()  # anyio's clock on asyncio, without its per-call backend lookup

    def arm(self, seconds: float, why: str) -> float:
        """From now on, reads must end within `seconds` (and before the cap). Returns the deadline."""
        self.deadline = min(self._loop.time() + seconds, self.cap)
        self.why = why
        self.reading = True
        if self.deadline < self._wake:
            self._schedule(self.deadline)
        return self.deadline

    def pause(self) -> None:
        """Not reading from the upstream (writing to the client): the deadline does not count."""
        self.reading = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._wake = None, math.inf

    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._wake = self._loop.call_at(when, self._check), when

    def _check(self) -> None:
        self._timer, self._wake = None, math.inf
        if not self.reading:
            return  # the next arm() schedules the timer again
        if self._loop.time() >= self.deadline:
            self.expired = self.why
            self.scope.cancel()
        else:
            self._schedule(self.deadline)  # re-armed since: sleep until the deadline it has now
