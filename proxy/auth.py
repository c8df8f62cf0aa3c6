"""Client authentication: API keys on POST, and signed one-stream tokens for EventSource's GET.

Keys are kept only as SHA-256 digests, so a presented key is hashed and looked up: the lookup's timing
tells an attacker nothing about a key they do not already have. A stream token is
`<key id>.<expiry>.<nonce>.<HMAC-SHA256 of those>`; it is good for one stream and `token_ttl` seconds.
Used nonces are kept until their token would have expired, in a bounded store: when it is full, new
tokens are refused rather than old ones forgotten (fail closed).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from proxy.config import AuthConfig
from proxy.errors import Overloaded, Unauthorized

Clock = Callable[[], float]
MAX_USED_TOKENS = 100_000


@dataclass(frozen=True, slots=True)
class Client:
    """Who made a request: `key:<id>` when a key or token proved it, else `ip:<address>`."""

    identity: str
    authenticated: bool


def key_id(digest: str) -> str:
    """A short, stable name for a key in logs and limits; not the key, and not enough to find it."""
    return digest[:12]


@dataclass
class Authenticator:
    config: AuthConfig
    clock: Clock = time.time
    _secret: bytes = b""
    _used: dict[str, float] = field(default_factory=dict)
    _expiries: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        configured = self.config.token_secret
        self._secret = configured.get_secret_value().encode() if configured else secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return bool(self.config.key_hashes)

    def from_headers(self, headers: Mapping[str, str]) -> str | None:
        """The key id for a valid `Authorization: Bearer` key; None when absent or unknown."""
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        digest = hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).hexdigest()
        return key_id(digest) if digest in self.config.key_hashes else None

    def issue(self, kid: str) -> str:
        expires = int(self.clock() + self.config.token_ttl)
        body = f"{kid}.{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}"

    def redeem(self, token: str) -> str:
        """Check and use up a stream token; return its key id. Raises Unauthorized."""
        body, _, signature = token.rpartition(".")
        parts = body.split(".")
        presented = signature.encode("utf-8", "surrogateescape")  # compare_digest refuses non-ASCII str
        if len(parts) != 3 or not hmac.compare_digest(presented, self._sign(body).encode()):
            raise Unauthorized("the stream token is not valid")
        kid, expires, nonce = parts
        now = self.clock()
        if not (expires.isascii() and expires.isdigit()) or int(expires) < now:
            raise Unauthorized("the stream token has expired; ask POST /token for a new one")
        self._forget_expired(now)
        if nonce in self._used:
            raise Unauthorized("the stream token was already used; ask POST /token for a new one")
        if len(self._used) >= MAX_USED_TOKENS:
            raise Overloaded("too many stream tokens in use; try again shortly")
        self._used[nonce] = int(expires)
        heapq.heappush(self._expiries, (int(expires), nonce))
        return kid

    def signed_key(self, token: str) -> str | None:
        """The key id of a token this proxy signed, used or expired alike; None if the signature is wrong.

        For resuming a stream the token already started (proxy/resume/streams.py), never for a new one.
        """
        body, _, signature = token.rpartition(".")
        parts = body.split(".")
        presented = signature.encode("utf-8", "surrogateescape")
        if len(parts) != 3 or not hmac.compare_digest(presented, self._sign(body).encode()):
            return None
        return parts[0]

    def fingerprint(self, identity: str) -> str:
        """A keyed digest of a client identity: what a stream stores to know its owner, never the key."""
        return self._sign(f"owner:{identity}")

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._secret, body.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def _forget_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            _, nonce = heapq.heappop(self._expiries)
            self._used.pop(nonce, None)
