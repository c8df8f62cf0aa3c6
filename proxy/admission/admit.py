"""Who may start a stream, and whether there is room for it: auth, then the rate limit.

One request is charged once: `POST /chat`, `GET /stream` and `POST /token` each cost one request from
the client's bucket, except a `GET /stream` that redeems a token, which was paid for at `POST /token`.
A request without a valid key is charged to its IP address before it is refused, so a flood of bad
keys is throttled like any other. The counters live behind `SharedLimits`: in this process, or in
Redis when `resume.redis_url` is set (then every check is one round trip, hence `async`). So do the
budgets (proxy/admission/budgets.py), on the same Redis client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request

from llm_sse_proxy.proxy.admission.auth import Authenticator, Client, Clock, client_of, token_subject
from llm_sse_proxy.proxy.admission.budgets import Budgets
from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.errors import Unauthorized
from llm_sse_proxy.proxy.admission.limits import RateLimiter, StreamGates
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.redis_limits import RedisLimits
from llm_sse_proxy.proxy.state.budgets import MemoryBudgets
from llm_sse_proxy.proxy.state.limits import Leave, MemoryLimits, SharedLimits
from llm_sse_proxy.proxy.state.redis_budgets import RedisBudgets

ANONYMOUS = "anonymous"


@dataclass
class Admission:
    auth: Authenticator
    limits: SharedLimits
    budgets: Budgets

    @classmethod
    def from_config(cls, config: Config, redis: SharedRedis | None, budget_clock: Clock = time.time) -> Admission:
        """The limits and budgets in this process, or in Redis through the process's one client when there
        is one; `budget_clock` is the wall clock the in-memory budgets' windows follow (Redis follows its own)."""
        auth, limits = Authenticator(config.auth), config.limits
        if redis is None:
            rates = RateLimiter(limits.requests_per_minute, limits.burst)
            gates = StreamGates(limits.streams_per_client, limits.max_streams)
            return cls(auth, MemoryLimits(rates, gates, auth.used), Budgets(config, MemoryBudgets(budget_clock)))
        shared = RedisLimits(redis, per_minute=limits.requests_per_minute, burst=limits.burst,
                             per_client=limits.streams_per_client, total=limits.max_streams)
        return cls(auth, shared, Budgets(config, RedisBudgets(redis)))

    async def admit(self, request: Request, *, token: str | None = None) -> Client:
        """Identify the client and charge its bucket; raise 401 or 429 when it may not go on."""
        address = Client(f"ip:{request.client.host if request.client else 'unknown'}", authenticated=False)
        try:
            client = await self.auth.identify(request.headers)
        except Unauthorized:
            await self.limits.take(address.identity)  # a flood of bad JWTs is throttled like bad keys
            raise
        if client is None and token is not None and self.auth.enabled:
            verified = self.auth.verify(token)
            await self.limits.spend_token(verified.nonce, verified.expires)
            return client_of(verified.kid)
        client = client or address
        await self.limits.take(client.identity)
        if self.auth.enabled and not client.authenticated:
            raise Unauthorized(self._wanted(), code="invalid_api_key")  # each door adds its own hint
        return client

    def _wanted(self) -> str:
        keys, users = bool(self.auth.config.key_hashes), self.auth.users is not None
        what = "key or JWT" if keys and users else ("JWT" if users else "key")
        return f"send a valid {what} as 'Authorization: Bearer <{what.replace(' or ', '/').lower()}>'"

    def issue_token(self, client: Client) -> str:
        return self.auth.issue(token_subject(client) if client.authenticated else ANONYMOUS)

    async def enter(self, client: Client) -> Leave:
        """A stream slot for this client (429 or 503 when there is none); call the result to leave."""
        budget = self.budgets.budget_for(client)
        return await self.limits.enter(client.identity, budget.streams if budget is not None else None)
