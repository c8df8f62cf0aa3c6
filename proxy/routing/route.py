"""One request's way through its chain of models and their deployments (issue 22).

`Routes` is the app's: every model's deployments and the shared state. `RequestRoute` is one request's:
it takes a deployment for each attempt, remembers the ones tried (a retry goes to another healthy
deployment of the same model first, then to the fallbacks), and reports what happened to the state.
The relay asks it for attempts and knows nothing else of deployments.

When every deployment of every model in the chain is open (or over its quota), `Routes.open` says so
before the stream starts: 503 `deployments_unavailable` with Retry-After, instead of timeouts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_sse_proxy.proxy.config import BreakerConfig
from llm_sse_proxy.proxy.deltas import Usage
from llm_sse_proxy.proxy.errors import Overloaded, UpstreamError, UpstreamUnavailable
from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute
from llm_sse_proxy.proxy.state.routing import MemoryRouting, RoutingState, Taken, Wanted

if TYPE_CHECKING:
    from llm_sse_proxy.proxy.relay.relay import Upstream

HOLDING_STATUS = frozenset({429, 503})  # their Retry-After speaks for the deployment, not the request
LEASE_MARGIN = 60.0  # seconds an in-flight slot outlives `timeouts.total`, should its release be lost


class DeploymentsOpen(Overloaded):
    """503 before the stream: no deployment of the chain may be asked now."""

    type = "deployments_unavailable"


class ModelUnavailable(UpstreamUnavailable):
    """Inside the stream: no deployment of this model may be asked now; the chain moves on."""

    type = "deployments_unavailable"


@dataclass(frozen=True, slots=True)
class Attempt:
    deployment: Deployment
    taken: Taken

    @property
    def upstream(self) -> Upstream:
        return self.deployment.upstream


def hold_seconds(exc: UpstreamError, cap: float) -> float | None:
    """How long a 429/503 with Retry-After holds its deployment off (capped); None when it asks nothing."""
    retry_after = getattr(exc, "retry_after", None)
    if cap <= 0 or exc.status not in HOLDING_STATUS or not retry_after or retry_after <= 0:
        return None
    return min(float(retry_after), cap)


def counts_against(exc: UpstreamError) -> bool:
    """A failure of the deployment, not of the request: connect errors, 5xx, timeouts, cuts."""
    return exc.retryable and (exc.status is None or exc.status >= 500)


class Routes:
    """Every model's deployments and the state they share; `open` starts a request's route."""

    def __init__(self, models: dict[str, ModelRoute], state: RoutingState, *, total: float, cooldown_max: float) -> None:
        self.models = models
        self.state = state
        self.lease = total + LEASE_MARGIN
        self.cooldown_max = cooldown_max

    async def open(self, names: Sequence[str]) -> RequestRoute:
        chain = [self.models[name] for name in names]
        route = RequestRoute(self, chain)
        taken = await self.state.take(Wanted(chain, range(len(chain)), lease=self.lease))
        if not isinstance(taken, Taken):
            wait = max(1, math.ceil(taken)) if math.isfinite(taken) else 1
            raise DeploymentsOpen(f"every deployment of {', '.join(names)} is unavailable (circuit breakers open or "
                                  f"quotas spent); try again in {wait} s", retry_after=wait)
        route.ready = taken
        return route


class RequestRoute:
    """One request's attempts: which deployments it took, and which it must not take again."""

    def __init__(self, routes: Routes, chain: Sequence[ModelRoute]) -> None:
        self.routes = routes
        self.chain = chain
        self.ready: Taken | None = None  # taken by `Routes.open`, for the first attempt
        self.tried: set[str] = set()
        self.held: set[Attempt] = set()

    @classmethod
    def of_upstreams(cls, upstreams: Sequence[Upstream]) -> RequestRoute:
        """Each upstream one deployment, with this request's own state (a relay built without routes:
        benchmarks, tests of the relay alone)."""
        chain = [ModelRoute(u.name, (Deployment(f"{u.name}/0", "0", u),), breaker=BreakerConfig(failures=0))
                 for u in upstreams]
        return cls(Routes({m.name: m for m in chain}, MemoryRouting(), total=0, cooldown_max=0), chain)

    async def take(self, position: int) -> Attempt:
        """A deployment of the model at `position` for the next attempt; ModelUnavailable when none may be asked."""
        taken, self.ready = self.ready, None
        if taken is not None and taken.position > position:
            self.ready = taken  # `open` found this model's deployments all closed: kept for the one it took
            taken = None
        elif taken is None:
            taken = await self._take(range(position, position + 1), avoid=True)
        if taken is None:
            raise ModelUnavailable(f"every deployment of model {self.chain[position].name!r} is unavailable")
        return self._held(taken)

    async def hedge(self, position: int) -> Attempt | None:
        """The next candidate beside a silent attempt: another deployment of this model, else a fallback's."""
        taken = await self._take(range(position, len(self.chain)), avoid=False)
        return None if taken is None else self._held(taken)

    def has_untried(self, position: int) -> bool:
        return any(d.key not in self.tried for d in self.chain[position].deployments)

    def first_token(self, attempt: Attempt, ttft: float) -> None:
        if attempt.taken.report:
            self.routes.state.first_token(attempt.deployment, attempt.taken, ttft)

    def failed(self, attempt: Attempt, exc: UpstreamError) -> None:
        """The attempt failed before its first delta: its breaker hears of it."""
        hold = hold_seconds(exc, self.routes.cooldown_max)
        if hold is not None or counts_against(exc):
            model = self.chain[attempt.taken.position]
            self.routes.state.failed(attempt.deployment, attempt.taken, model, hold)

    def done(self, attempt: Attempt, usage: Usage | None) -> None:
        if attempt in self.held:
            self._release(attempt, usage)

    def close(self) -> None:
        """The stream is over: every slot still held is given back."""
        if self.ready is not None:
            self._held(self.ready)
            self.ready = None
        for attempt in list(self.held):
            self._release(attempt, None)

    async def _take(self, positions: range, *, avoid: bool) -> Taken | None:
        tried = frozenset(self.tried)
        wanted = Wanted(self.chain, positions, avoid=tried if avoid else frozenset(),
                        exclude=frozenset() if avoid else tried, lease=self.routes.lease)
        taken = await self.routes.state.take(wanted)
        return taken if isinstance(taken, Taken) else None

    def _held(self, taken: Taken) -> Attempt:
        attempt = Attempt(self.chain[taken.position].deployments[taken.index], taken)
        self.tried.add(attempt.deployment.key)
        self.held.add(attempt)
        return attempt

    def _release(self, attempt: Attempt, usage: Usage | None) -> None:
        self.held.discard(attempt)
        tokens = usage.total_tokens if usage is not None else 0
        self.routes.state.release(attempt.deployment, attempt.taken, tokens)
