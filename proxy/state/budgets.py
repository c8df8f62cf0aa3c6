"""Budget counters: the seam between admission and where they live, and the in-process twin.

A budget is a set of meters, each a fixed window (a minute or a UTC day) with a limit: requests,
tokens, or spend (in nano-units of the price's currency, so every counter is an integer). `reserve`
is atomic: it reads every meter of one identity, refuses on the first one spent, caps `max_tokens`
to what every meter has left, and charges the request's worst case (its prompt and that many answer
tokens). `settle` corrects the charge by what the stream really used, in the windows it was charged
to. With `resume.redis_url` set, proxy/state/redis_budgets.py does the same in one Lua script per
call, so the budgets hold exactly across replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Clock = Callable[[], float]
Kind = Literal["requests", "tokens", "spend"]
MAX_COUNTERS = 200_000  # past it, counters of windows that have ended are dropped first
MINUTE, DAY = 60, 86_400
WINDOWS = {"tokens_per_minute": MINUTE, "requests_per_minute": MINUTE, "tokens_per_day": DAY, "spend_per_day": DAY}


@dataclass(frozen=True, slots=True)
class Meter:
    """One limit of a budget: `name` as in the config (`tokens_per_minute`), its window in seconds."""

    name: str
    kind: Kind
    window: int
    limit: int


@dataclass(frozen=True, slots=True)
class Ask:
    """What a request would cost at most: its prompt's tokens (an estimate), the answer's cap, prices
    per token in nano-units."""

    prompt: int
    max_tokens: int
    input_price: int = 0
    output_price: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    """What one meter was charged, in which window: what `settle` corrects."""

    meter: Meter
    window_index: int
    amount: int


@dataclass(frozen=True, slots=True)
class Grant:
    max_tokens: int
    charges: tuple[Charge, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    meter: Meter
    retry_after: float  # seconds until its window ends


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter as GET /usage shows it."""

    meter: Meter
    used: int
    resets_in: float

    @property
    def left(self) -> int:
        return max(0, self.meter.limit - self.used)


class BudgetStore(Protocol):
    async def reserve(self, identity: str, meters: Sequence[Meter], ask: Ask) -> Grant | Refusal: ...

    def settle(self, identity: str, corrections: Sequence[tuple[Charge, int]]) -> None:
        """Add each (charge, amount really used - amount charged) to the window it was charged in: at
        once, or in a task that closing the store waits for."""

    async def read(self, identity: str, meters: Sequence[Meter]) -> list[Reading]: ...

    async def reset(self, identity: str, meters: Sequence[Meter]) -> None: ...

    async def __aenter__(self) -> BudgetStore: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


def decide(meters: Sequence[Meter], used: Sequence[int], ask: Ask, now: float) -> Grant | Refusal:
    """The rule both stores follow (redis_budgets.py's RESERVE script is this, in Lua)."""
    cap = ask.max_tokens
    for meter, spent in zip(meters, used, strict=True):
        left = meter.limit - spent
        if meter.kind == "tokens":
            cap = min(cap, left)
        elif meter.kind == "spend" and ask.output_price:
            cap = min(cap, left // ask.output_price)
        if left < 1 or cap < 1:
            return Refusal(meter, _until_next(meter, now))
    charges = tuple(Charge(m, int(now // m.window), amount(m, ask, cap)) for m in meters)
    return Grant(cap, charges)


def amount(meter: Meter, ask: Ask, cap: int) -> int:
    """What a grant of `cap` answer tokens charges a meter."""
    if meter.kind == "requests":
        return 1
    if meter.kind == "tokens":
        return ask.prompt + cap
    return ask.prompt * ask.input_price + cap * ask.output_price


def _until_next(meter: Meter, now: float) -> float:
    return (math.floor(now / meter.window) + 1) * meter.window - now


class MemoryBudgets:
    """The budgets of this process: exact for one replica, N times looser for N replicas."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._counters: dict[tuple[str, str, int], int] = {}  # (identity, meter, window index) -> used

    async def reserve(self, identity: str, meters: Sequence[Meter], ask: Ask) -> Grant | Refusal:
        now = self.clock()
        used = [self._counters.get((identity, m.name, int(now // m.window)), 0) for m in meters]
        decision = decide(meters, used, ask, now)
        if isinstance(decision, Grant):
            for charge in decision.charges:
                key = (identity, charge.meter.name, charge.window_index)
                self._counters[key] = self._counters.get(key, 0) + charge.amount
            self._bound(now)
        return decision

    def settle(self, identity: str, corrections: Sequence[tuple[Charge, int]]) -> None:
        for charge, delta in corrections:
            key = (identity, charge.meter.name, charge.window_index)
            if key in self._counters:  # a window that has ended is not brought back
                self._counters[key] += delta

    async def read(self, identity: str, meters: Sequence[Meter]) -> list[Reading]:
        now = self.clock()
        return [Reading(m, self._counters.get((identity, m.name, int(now // m.window)), 0), _until_next(m, now))
                for m in meters]

    async def reset(self, identity: str, meters: Sequence[Meter]) -> None:
        for key in [k for k in self._counters if k[0] == identity]:
            del self._counters[key]

    def _bound(self, now: float) -> None:
        if len(self._counters) <= MAX_COUNTERS:
            return
        # Only the counter of a window that has ended may go: forgetting a live one would free its budget.
        for key in [k for k in self._counters if k[2] < int(now // WINDOWS[k[1]])]:
            del self._counters[key]

    async def __aenter__(self) -> MemoryBudgets:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

