"""What the mock upstream saw: one Attempt per request, shared with the tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio


@dataclass
class Attempt:
    model: str  # as sent, suffix included
    body: dict
    headers: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    chunks_sent: int = 0  # content chunks only
    closed_at: float | None = None
    finished: bool = False  # [DONE] (or the JSON reply) went out normally
    fault: str | None = None  # the fault that fired, e.g. "fail:503" or "drop_after"
    status: int = 200
    key: str = ""


class Recorder:
    """What the upstream saw. Shared with tests; only the server's event loop writes to it."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self._tries: dict[str, int] = {}

    def count(self, model: str | None = None) -> int:
        return sum(1 for a in self.attempts if model is None or a.model == model)

    async def wait_closed(self, attempt_index: int = -1, timeout: float = 2.0) -> float:
        # Polls instead of waiting on an Event so it also works when the server runs in another thread
        # or loop; the returned time is the one recorded at the close, so polling adds no error to it.
        deadline = time.monotonic() + timeout
        while (closed := self._closed_at(attempt_index)) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"attempt {attempt_index} not closed within {timeout} s")
            await anyio.sleep(0.002)
        return closed

    def _closed_at(self, index: int) -> float | None:
        return self.attempts[index].closed_at if -len(self.attempts) <= index < len(self.attempts) else None

    def _try(self, key: str, cycle: int = 0) -> int:
        """This attempt's number for `key`, from 1; with a cycle, counted again from 1 every `cycle` attempts."""
        self._tries[key] = n = self._tries.get(key, 0) + 1
        return (n - 1) % cycle + 1 if cycle else n
