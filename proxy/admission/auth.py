"""Client authentication: API keys on POST, and signed one-stream tokens for EventSource's GET.

Keys are kept only as SHA-256 digests, so a presented key is hashed and looked up: the lookup's timing
tells an attacker nothing about a key they do not already have. A stream token is
`<key id>.<expiry>.<nonce>.<HMAC-SHA256 of those>`; it is good for one stream and `token_ttl` seconds.
Used nonces are kept until their token would have expired, in a bounded store: when it is full, new
tokens are refused rather than old ones forgotten (fail closed). With Redis configured, the nonces are
spent there instead (proxy/state/redis_limits.py), so a token is single-use across replicas.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from llm_sse_proxy.proxy.admission.jwt_auth import JwtVerifier, looks_like_jwt
from llm_sse_proxy.proxy.config import AuthConfig
from llm_sse_proxy.proxy.errors import Overloaded, Unauthorized

Clock = Callable[[], float]
MAX_USED_TOKENS = 100_000
ALREADY_USED = "the stream token was already used; ask POST /token for a new one"


@dataclass(frozen=True, slots=True)
class Client:
    """Who made a request: `user:<id>` when a JWT proved it, `key:<id>` when a key or token did, else
    `ip:<address>`. `tier` is the JWT's tier claim, when configured."""

    identity: str
    authenticated: bool
    tier: str | None = None


def token_subject(client: Client) -> str:
    """What a stream token names: a key id, or for a JWT's user `u~` and the base64url of [id, tier]
    (no dots: the token is dot-separated)."""
    if client.identity.startswith("user:"):
        packed = json.dumps([client.identity.removeprefix("user:"), client.tier]).encode()
        return "u~" + base64.urlsafe_b64encode(packed).rstrip(b"=").decode()
    return client.identity.removeprefix("key:")


def client_of(subject: str) -> Client:
    """The client a stream token this proxy signed names (see `token_subject`)."""
    if not subject.startswith("u~"):
        return Client(f"key:{subject}", authenticated=True)
    packed = subject.removeprefix("u~")
    user, tier = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    return Client(f"user:{user}", authenticated=True, tier=tier)


def key_id(digest: str) -> str:
    """A short, stable name for a key in logs and limits; not the key, and not enough to find it."""
    return digest[:12]


@dataclass(frozen=True, slots=True)
class Verified:
    """A stream token whose signature and expiry are good; it still has to be spent once."""

    kid: str
    nonce: str
    expires: int


class UsedTokens:
    """The used nonces of one process, each kept until its token would have expired."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}
        self._expiries: list[tuple[int, str]] = []

    def spend(self, nonce: str, expires: int, now: float) -> None:
        """Mark a nonce used; raise Unauthorized if it was, Overloaded if the store is full."""
        while self._expiries and self._expiries[0][0] < now:
            _, old = heapq.heappop(self._expiries)
            self._used.pop(old, None)
        if nonce in self._used:
            raise Unauthorized(ALREADY_USED)
        if len(self._used) >= MAX_USED_TOKENS:
            raise Overloaded("too many stream tokens in use; try again shortly")
        self._used[nonce] = expires
        heapq.heappush(self._expiries, (expires, nonce))


@dataclass
class Authenticator:
    config: AuthConfig
    clock: Clock = time.time
    used: UsedTokens = field(default_factory=UsedTokens)
    _secret: bytes = b""
    users: JwtVerifier | None = None  # with auth.jwt: end users' JWTs (issue 23)

    def __post_init__(self) -> None:
        configured = self.config.token_secret
        self._secret = configured.get_secret_value().encode() if configured else secrets.token_bytes(32)
        if self.config.jwt is not None:
            self.users = JwtVerifier(self.config.jwt)

    @property
    def enabled(self) -> bool:
        return bool(self.config.key_hashes) or self.config.jwt is not None

    def from_headers(self, headers: Mapping[str, str]) -> str | None:
        """The key id for a valid `Authorization: Bearer` key; None when absent or unknown."""
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        digest = hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).hexdigest()
        return key_id(digest) if digest in self.config.key_hashes else None

    async def identify(self, headers: Mapping[str, str]) -> Client | None:
        """The client a Bearer credential proves: a key, else a JWT's user. None when there is no valid key
        and no JWT; Unauthorized, saying why, for a JWT that fails a check."""
        kid = self.from_headers(headers)
        if kid is not None:
            return Client(f"key:{kid}", authenticated=True)
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if self.users is None or scheme.lower() != "bearer" or not looks_like_jwt(credential):
            return None
        user = await self.users.verify(credential)
        return Client(f"user:{user.id}", authenticated=True, tier=user.tier)

    def is_admin(self, headers: Mapping[str, str]) -> bool:
        """Whether the Bearer credential is one of `auth.admin_keys`."""
        scheme, _, key = headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).hexdigest()
        return scheme.lower() == "bearer" and digest in self.config.admin_key_hashes

    def issue(self, kid: str) -> str:
        expires = int(self.clock() + self.config.token_ttl)
        body = f"{kid}.{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str) -> Verified:
        """Check a stream token's signature and expiry, without spending it. Raises Unauthorized."""
        body, _, signature = token.rpartition(".")
        parts = body.split(".")
        presented = signature.encode("utf-8", "surrogateescape")  # compare_digest refuses non-ASCII str
        if len(parts) != 3 or not hmac.compare_digest(presented, self._sign(body).encode()):
            raise Unauthorized("the stream token is not valid")
        kid, expires, nonce = parts
        if not (expires.isascii() and expires.isdigit()) or int(expires) < self.clock():
            raise Unauthorized("the stream token has expired; ask POST /token for a new one")
        return Verified(kid, nonce, int(expires))

    def redeem(self, token: str) -> str:
        """Check and use up a stream token in this process's own store; return its key id."""
        verified = self.verify(token)
        self.used.spend(verified.nonce, verified.expires, self.clock())
        return verified.kid

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
