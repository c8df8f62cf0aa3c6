"""Who may start a stream, and whether there is room for it: auth, then the rate limit.

One request is charged once: `POST /chat`, `GET /stream` and `POST /token` each cost one request from
the client's bucket, except a `GET /stream` that redeems a token, which was paid for at `POST /token`.
A request without a valid key is charged to its IP address before it is refused, so a flood of bad
keys is throttled like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from proxy.auth import Authenticator, Client
from proxy.config import Config
from proxy.errors import Unauthorized
from proxy.limits import RateLimiter, StreamGates

ANONYMOUS = "anonymous"


@dataclass
class Admission:
    auth: Authenticator
    limiter: RateLimiter
    gates: StreamGates

    @classmethod
    def from_config(cls, config: Config) -> Admission:
        limits = config.limits
        return cls(
            Authenticator(config.auth),
            RateLimiter(limits.requests_per_minute, limits.burst),
            StreamGates(limits.streams_per_client, limits.max_streams),
        )

    def admit(self, request: Request, *, token: str | None = None) -> Client:
        """Identify the client and charge its bucket; raise 401 or 429 when it may not go on."""
        kid = self.auth.from_headers(request.headers)
        if kid is not None:
            client = Client(f"key:{kid}", authenticated=True)
        elif token is not None and self.auth.enabled:
            return Client(f"key:{self.auth.redeem(token)}", authenticated=True)
        else:
            client = Client(f"ip:{request.client.host if request.client else 'unknown'}", authenticated=False)
        self.limiter.take(client.identity)
        if self.auth.enabled and not client.authenticated:
            raise Unauthorized("send a valid key as 'Authorization: Bearer <key>', or a ?token= from POST /token")
        return client

    def issue_token(self, client: Client) -> str:
        return self.auth.issue(client.identity.removeprefix("key:") if client.authenticated else ANONYMOUS)

    def enter(self, client: Client) -> Callable[[], None]:
        """A stream slot for this client (429 or 503 when there is none); call the result to leave."""
        return self.gates.enter(client.identity)
