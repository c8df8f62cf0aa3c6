"""A deployment's circuit breaker, as plain state and pure transitions (the memory state's; the Redis
state runs the same rules in Lua, proxy/state/routing_scripts.py).

closed: failures are counted in a window that starts at the first one; `failures` of them within
`window` seconds open it. open: nobody asks the deployment for `open_for` seconds (or for as long as a
429/503's Retry-After said). half-open: once that time has passed, one request (the probe) may ask it,
for at most PROBE_LEASE seconds; its first token closes the breaker, its failure opens it again.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBE_LEASE = 60.0  # seconds a probe holds the half-open deployment, should it never report


@dataclass(slots=True)
class BreakerState:
    open_until: float = 0.0  # 0: closed; else it was opened, and is half-open once the time has passed
    probe_until: float = 0.0  # a half-open probe is under way until then
    fails: int = 0
    fail_start: float = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a request may ask the deployment; 0 when one may now."""
        if self.open_until > now:
            return self.open_until - now
        if self.open_until and self.probe_until > now:
            return self.probe_until - now
        return 0.0

    def half_open(self, now: float) -> bool:
        return 0 < self.open_until <= now

    @property
    def clean(self) -> bool:
        """Nothing to report on success: closed, with no failure counted."""
        return not self.open_until and not self.fails

    def take_probe(self, now: float, lease: float = PROBE_LEASE) -> None:
        self.probe_until = now + lease

    def succeeded(self) -> None:
        self.open_until = self.probe_until = 0.0
        self.fails = 0

    def failed(self, now: float, *, failures: int, window: float, open_for: float) -> None:
        if self.open_until:  # a probe failed (or a request let through before it opened)
            self._open(now + open_for)
            return
        if failures <= 0:
            return
        if self.fails == 0 or now - self.fail_start > window:
            self.fails, self.fail_start = 0, now
        self.fails += 1
        if self.fails >= failures:
            self._open(now + open_for)

    def hold(self, until: float) -> None:
        """A 429/503 with Retry-After: nobody asks until then (then half-open, as after any opening)."""
        if until > self.open_until:
            self._open(until)

    def _open(self, until: float) -> None:
        self.open_until, self.probe_until, self.fails = until, 0.0, 0
