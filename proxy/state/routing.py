"""What the routing shares between replicas: breakers, streams in flight, latency estimates, rpm/tpm.

`RoutingState` is the seam; `MemoryRouting` keeps it all in this process (one replica's view, exact
for one replica), and `RedisRouting` (proxy/state/routing_redis.py) keeps it in Redis, where one Lua
script picks and takes a deployment atomically, so every replica sees one breaker and one quota.

`take` is the only call a stream waits for (one round trip with Redis); `first_token`, `failed` and
`release` report what happened and return at once: with Redis they go out in the background.
"""

from __future__ import annotations

import math
import random
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llm_sse_proxy.proxy.routing.breaker import BreakerState
from llm_sse_proxy.proxy.routing.choose import Candidate, choose, faded, measured
from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute

QUOTA_WINDOW = 60.0  # rpm and tpm are per minute, counted over the last 60 s

Clock = Callable[[], float]
Random = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Taken:
    """A deployment taken for one attempt: its place in the chain, and the lease that holds its slot."""

    position: int  # the model's index in the chain
    index: int  # the deployment's index in the model
    lease: str
    probe: bool = False  # the one request a half-open breaker lets through
    report: bool = False  # its first token is to be reported: it closes a breaker, or feeds `latency`


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a take asks: the chain, which of its models to look at, which deployments to keep away from."""

    chain: Sequence[ModelRoute]
    positions: range
    avoid: frozenset[str] = frozenset()  # tried by this request: taken only if nothing else can be
    exclude: frozenset[str] = frozenset()  # not at all (a hedge is never sent where the request already went)
    lease: float = 600.0  # seconds a stream may hold its in-flight slot, should it never be released


class RoutingState(Protocol):
    async def take(self, wanted: Wanted) -> Taken | float:
        """A deployment for the first model of `wanted.positions` that has one; else the seconds until one
        may be asked (breakers open, quotas spent)."""

    def first_token(self, deployment: Deployment, taken: Taken, ttft: float) -> None:
        """The attempt got its first upstream delta after `ttft` seconds: a success."""

    def failed(self, deployment: Deployment, taken: Taken, model: ModelRoute, hold: float | None) -> None:
        """The attempt failed in a way that counts against the deployment; `hold`: a Retry-After."""

    def open_breakers(self) -> list[tuple[str, str, bool]]:
        """(model, deployment, open) for each deployment this process has asked, as this process knows it."""

    def release(self, deployment: Deployment, taken: Taken, tokens: int) -> None:
        """The attempt is over: its slot is free, its tokens count against `tpm`."""

    async def __aenter__(self) -> RoutingState: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


@dataclass(slots=True)
class _Deployment:
    breaker: BreakerState = field(default_factory=BreakerState)
    busy: dict[str, float] = field(default_factory=dict)  # lease -> when it expires
    requests: deque[float] = field(default_factory=deque)  # when each request of the last minute went
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    latency: float | None = None
    seen: float = 0.0

    def forget(self, now: float) -> None:
        if self.busy:
            for lease in [lease for lease, until in self.busy.items() if until <= now]:
                del self.busy[lease]
        while self.requests and self.requests[0] <= now - QUOTA_WINDOW:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - QUOTA_WINDOW:
            self.tokens.popleft()

    def quota_wait(self, deployment: Deployment, now: float) -> float:
        if deployment.rpm is not None and len(self.requests) >= deployment.rpm:
            return self.requests[0] + QUOTA_WINDOW - now
        if deployment.tpm is not None and sum(n for _, n in self.tokens) >= deployment.tpm:
            return self.tokens[0][0] + QUOTA_WINDOW - now
        return 0.0


class MemoryRouting:
    """The routing state of this process: exact for one replica; N replicas each keep their own."""

    def __init__(self, clock: Clock = time.monotonic, rand: Random = random.random) -> None:
        self.clock = clock
        self.rand = rand
        self._state: dict[str, _Deployment] = {}
        self._deployments: dict[str, Deployment] = {}  # each one seen, for `open_breakers`
        self._leases = itertools.count()

    def _of(self, deployment: Deployment) -> _Deployment:
        state = self._state.get(deployment.key)
        if state is None:
            state = self._state[deployment.key] = _Deployment()
            self._deployments[deployment.key] = deployment
        return state

    def open_breakers(self) -> list[tuple[str, str, bool]]:
        """(model, deployment, open or half-open) for each deployment this process has asked, as this process
        knows it: with Redis, from the reports of its own requests (the gauge of /metrics)."""
        return [(d.key[: -len(d.label) - 1], d.label, bool(self._state[key].breaker.open_until))
                for key, d in self._deployments.items()]

    async def take(self, wanted: Wanted) -> Taken | float:
        now, wait = self.clock(), math.inf
        for position in wanted.positions:
            model = wanted.chain[position]
            ready, soonest = self._ready(model, wanted, now)
            wait = min(wait, soonest)
            if ready:
                return self._take(model, position, ready, now, wanted.lease)
        return wait

    def _ready(self, model: ModelRoute, wanted: Wanted, now: float) -> tuple[list[int], float]:
        """The deployments that may be asked now (untried first), and the soonest wait of the others."""
        fresh, tried, soonest = [], [], math.inf
        for i, deployment in enumerate(model.deployments):
            if deployment.key in wanted.exclude:
                continue
            state = self._of(deployment)
            state.forget(now)
            wait = max(state.breaker.wait(now), state.quota_wait(deployment, now))
            if wait > 0:
                soonest = min(soonest, wait)
            else:
                (tried if deployment.key in wanted.avoid else fresh).append(i)
        return fresh or tried, soonest

    def _take(self, model: ModelRoute, position: int, ready: list[int], now: float, lease_for: float) -> Taken:
        index = ready[0] if len(ready) == 1 else ready[self._choose(model, ready, now)]
        state = self._of(model.deployments[index])
        probe = state.breaker.half_open(now)
        if probe:
            state.breaker.take_probe(now)
        lease = str(next(self._leases))  # unique in this process, which is all a memory lease needs
        state.busy[lease] = now + lease_for
        state.requests.append(now)
        report = probe or not state.breaker.clean or model.measures_latency
        return Taken(position, index, lease, probe, report)

    def _choose(self, model: ModelRoute, ready: list[int], now: float) -> int:
        states = [self._of(model.deployments[i]) for i in ready]
        candidates = [Candidate(model.deployments[i].weight, len(s.busy), faded(s.latency, now - s.seen))
                      for i, s in zip(ready, states, strict=True)]
        return choose(model.strategy, candidates, (self.rand(), self.rand()))

    def first_token(self, deployment: Deployment, taken: Taken, ttft: float) -> None:
        state, now = self._of(deployment), self.clock()
        state.breaker.succeeded()
        state.latency, state.seen = measured(state.latency, now - state.seen, ttft), now

    def failed(self, deployment: Deployment, taken: Taken, model: ModelRoute, hold: float | None) -> None:
        state, now = self._of(deployment), self.clock()
        if hold:
            state.breaker.hold(now + hold)
        else:
            breaker = model.breaker
            state.breaker.failed(now, failures=breaker.failures, window=breaker.window, open_for=breaker.open_for)

    def release(self, deployment: Deployment, taken: Taken, tokens: int) -> None:
        state, now = self._of(deployment), self.clock()
        state.busy.pop(taken.lease, None)
        if taken.probe:
            state.breaker.probe_until = 0.0  # no verdict (the client left): the next request probes
        if tokens > 0:
            state.tokens.append((now, tokens))

    async def __aenter__(self) -> MemoryRouting:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
