"""The relay's attempts on a request's route (issue 22): which deployment each one went to, what it heard,
and where the next one goes.

An attempt takes a deployment of the model from the route (proxy/routing/route.py); its failure before
the first delta is reported to that deployment's breaker. A deployment that went silent (no first token
in time, or silent for `timeouts.connect` seconds and then failed) or that stalled mid-answer is not
the one the next try goes to: another deployment of the model is, else the next model (on the chain's
last model, the same one is tried again rather than giving up). With `timeouts.hedge_after` the first
delta is raced against the next candidate's (proxy/relay/hedge.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING

import anyio

from llm_sse_proxy.proxy.config import FaultsConfig, TimeoutsConfig
from llm_sse_proxy.proxy.deltas import ChatRequest, Delta, Usage
from llm_sse_proxy.proxy.errors import NoFirstToken, UpstreamError, UpstreamTimeout, UpstreamTruncated
from llm_sse_proxy.proxy.relay.hedge import Entrant, race
from llm_sse_proxy.proxy.relay.observer import NO_OBSERVER, RelayObserver
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.relay.recovery import add_usage
from llm_sse_proxy.proxy.routing.route import Attempt, RequestRoute

if TYPE_CHECKING:
    from llm_sse_proxy.proxy.relay.relay import Upstream



class Attempts:
    def __init__(self, route: RequestRoute, timeouts: TimeoutsConfig, faults: FaultsConfig, outcome: Outcome,
                 observer: RelayObserver = NO_OBSERVER) -> None:
        self.route = route
        self.observer = observer  # told of a hedge and its winner (a trace's events)
        self.timeouts = timeouts
        self.faults = faults
        self.outcome = outcome
        self.current: Attempt | None = None  # the attempt under way (or that answered)
        self.position = 0  # its model's place in the chain
        self.heard = False  # it yielded a delta
        self.moves_on = False  # its failure sends the next try to another candidate
        self.used: Usage | None = None  # what the attempt used, for its deployment's tpm
        self.last_failure: UpstreamError | None = None
        self.hedge_spent: Usage | None = None  # what hedges that failed used
        self._started = 0.0
        self._hedges: list[aclosing[AsyncIterator[Delta]]] = []

    async def begin(self, position: int) -> Upstream:
        """Take a deployment of the model at `position`; ModelUnavailable when none may be asked."""
        self.current = await self.route.take(position)
        self.outcome.attempts += 1
        self.position, self.heard, self.used, self._started = position, False, None, anyio.current_time()
        return self.current.upstream

    def failed(self, exc: UpstreamError) -> None:
        """The attempt failed: its breaker hears of a failure before the first delta; `moves_on` is set."""
        assert self.current is not None
        self.last_failure, self.used = exc, exc.usage
        if self.heard:  # mid-answer (or after its first delta): a stall is not asked to recover itself
            self.moves_on = isinstance(exc, UpstreamTimeout)
            return
        self.route.failed(self.current, exc)
        if isinstance(exc, NoFirstToken):
            self.moves_on = self.faults.first_token_timeout == "next_model"
        else:  # silent for long, then it died: asking it again costs as long again
            self.moves_on = anyio.current_time() - self._started >= self.timeouts.connect

    @property
    def upstream(self) -> Upstream:
        assert self.current is not None
        return self.current.upstream

    def billed(self, usage: Usage | None) -> Usage | None:
        """The answer's usage with what its failed hedges used; it counts against its deployment's tpm."""
        self.used = usage
        return add_usage(self.hedge_spent, usage)

    def end(self) -> None:
        if self.current is not None:
            self.route.done(self.current, self.used)

    def elsewhere(self) -> bool:
        """Another deployment of the model is left to try: the retry goes there, at once."""
        return self.route.has_untried(self.position)

    def next_model(self, exc: UpstreamError) -> bool:
        """The next try goes to the next model rather than to the deployment that went silent or stalled."""
        last = len(self.route.chain) - 1
        return self.moves_on and (isinstance(exc, NoFirstToken) or self.position < last)

    def answered(self) -> tuple[str | None, str | None]:
        """The label of the deployment that answered, and the same when clients may hear of it."""
        deployment = self.current.deployment if self.current else None
        if deployment is None:
            return None, None
        return deployment.label, deployment.label if deployment.listed else None

    async def first_delta(self, deltas: AsyncIterator[Delta], request: ChatRequest, hedge: bool,
                          ) -> tuple[Delta, AsyncIterator[Delta], Upstream]:
        """The attempt's first delta (raced against a hedge when asked), reported to the route."""
        if not hedge or self.timeouts.hedge_after is None:
            try:
                delta = await deltas.__anext__()
            except StopAsyncIteration:
                raise UpstreamTruncated("the upstream ended without finishing the answer") from None
        else:
            delta, deltas = await self._hedged(deltas, request, self.timeouts.hedge_after)
        assert self.current is not None
        self.heard = True
        self.route.first_token(self.current, anyio.current_time() - self._started)
        return delta, deltas, self.current.upstream

    async def close_hedges(self) -> None:
        """A hedge's stream ends with its attempt, won or lost."""
        while self._hedges:
            await self._hedges.pop().__aexit__(None, None, None)

    async def _hedged(self, deltas: AsyncIterator[Delta], request: ChatRequest,
                      after: float) -> tuple[Delta, AsyncIterator[Delta]]:
        assert self.current is not None

        async def start_next() -> Entrant | None:
            attempt = await self.route.hedge(self.position)
            if attempt is None:
                return None
            self.outcome.attempts += 1
            self.outcome.hedged = True
            self.observer.hedge_started(attempt.upstream.name)
            stream = aclosing(attempt.upstream.adapter.stream(request))
            self._hedges.append(stream)
            return Entrant(await stream.__aenter__(), attempt)

        def lost(entrant: Entrant, exc: UpstreamError, survivor: Entrant) -> None:
            self.hedge_spent = add_usage(self.hedge_spent, exc.usage)  # billed with the answer
            self.outcome.failures.append(exc.type)
            self.route.failed(entrant.tag, exc)
            self.route.done(entrant.tag, exc.usage)
            self.current = survivor.tag

        won = await race(Entrant(deltas, self.current), after, start_next, lost)
        for loser in won.losers:
            self.route.done(loser.tag, None)  # cancelled before its first delta: neither failed nor used
        self.current = won.entrant.tag
        if self.outcome.hedged:
            self.observer.hedge_won(self.current.upstream.name)
        return won.delta, won.entrant.deltas
