"""Who may start a stream, and whether there is room for it: auth, then the rate limit.

One request is charged once: `POST /chat`, `GET /stream` and `POST /token` each cost one request from
the client's bucket, except a `GET /stream` that redeems a token, which was paid for at `POST /token`.
A request without a valid key is charged to its IP address before it is refused, so a flood of bad
keys is throttled like any other. The counters live behind `SharedLimits`: in this process, or in
Redis when `resume.redis_url` is set (then every check is one round trip, hence `async`).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from llm_sse_proxy.proxy.admission.auth import Authenticator, Client
from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.errors import Unauthorized
from llm_sse_proxy.proxy.admission.limits import RateLimiter, StreamGates
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.redis_limits import RedisLimits
from llm_sse_proxy.proxy.state.limits import Leave, MemoryLimits, SharedLimits

ANONYMOUS = "anonymous"


@dataclass
class Admission:
    auth: Authenticator
    limits: SharedLimits

    @classmethod
    def from_config(cls, config: Config, redis: SharedRedis | None) -> Admission:
        """The limits in this process, or in Redis through the process's one client when there is one."""
        auth, limits = Authenticator(config.auth), config.limits
        if redis is None:
            rates = RateLimiter(limits.requests_per_minute, limits.burst)
            gates = StreamGates(limits.streams_per_client, limits.max_streams)
            return cls(auth, MemoryLimits(rates, gates, auth.used))
        return cls(auth, RedisLimits(
            redis, per_minute=limits.requests_per_minute, burst=limits.burst,
            per_client=limits.streams_per_client, total=limits.max_streams))

    async def admit(self, request: Request, *, token: str | None = None) -> Client:
        """Identify the client and charge its bucket; raise 401 or 429 when it may not go on."""
        kid = self.auth.from_headers(request.headers)
        if kid is not None:
            client = Client(f"key:{kid}", authenticated=True)
        elif token is not None and self.auth.enabled:
            verified = self.auth.verify(token)
            await self.limits.spend_token(verified.nonce, verified.expires)
            return Client(f"key:{verified.kid}", authenticated=True)
        else:
            client = Client(f"ip:{request.client.host if request.client else 'unknown'}", authenticated=False)
        await self.limits.take(client.identity)
        if self.auth.enabled and not client.authenticated:
            raise Unauthorized("send a valid key as 'Authorization: Bearer <key>'", code="invalid_api_key")
        return client

    def issue_token(self, client: Client) -> str:
        return self.auth.issue(client.identity.removeprefix("key:") if client.authenticated else ANONYMOUS)

    async def enter(self, client: Client) -> Leave:
        """A stream slot for this client (429 or 503 when there is none); call the result to leave."""
        return await self.limits.enter(client.identity)
