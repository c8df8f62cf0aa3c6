"""End users: JWTs that an app's backend signs for its users (issue 23), checked by PyJWT.

A token is verified against the configured key and nothing else: the algorithms are the config's, never
the token's header (so `alg: none` and an RS256 public key passed off as an HS256 secret are refused),
and `exp` is required unless the config says otherwise. Each refusal says which check failed; none
echoes the token. Keys from a JWKS URL are fetched by PyJWKClient (cached, refetched for an unknown
`kid`), in a worker thread, as its fetch blocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from llm_sse_proxy.proxy.config.budgets import JwtConfig
from llm_sse_proxy.proxy.errors import Overloaded, Unauthorized

MAX_CLAIM = 256  # characters of a user id or tier: they name counters and appear in logs
JWKS_TIMEOUT = 5.0

# PyJWT's exceptions, most specific first (ExpiredSignatureError is an InvalidTokenError, say).
_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "the JWT has expired"),
    (jwt.ImmatureSignatureError, "the JWT is not valid yet (nbf or iat is in the future)"),
    (jwt.InvalidAudienceError, "the JWT's audience (aud) is not this proxy's"),
    (jwt.InvalidIssuerError, "the JWT's issuer (iss) is not the one configured"),
    (jwt.InvalidAlgorithmError, "the JWT's algorithm is not one the proxy accepts"),
    (jwt.InvalidSignatureError, "the JWT's signature does not verify (tampered, or signed with another key)"),
    (jwt.MissingRequiredClaimError, "the JWT lacks a required claim"),
    (jwt.InvalidIssuedAtError, "the JWT's iat is not a time"),
    (jwt.DecodeError, "the JWT is malformed"),
    (jwt.InvalidTokenError, "the JWT is not valid"),
]


@dataclass(frozen=True, slots=True)
class User:
    """Who a valid JWT names: the user claim, and the tier claim when configured and present."""

    id: str
    tier: str | None = None


def looks_like_jwt(credential: str) -> bool:
    """Three dot-separated base64url parts: a JWS in compact form (RFC 7515 section 7.1)."""
    parts = credential.split(".")
    return len(parts) == 3 and all(parts[:2])


class JwtVerifier:
    """Checks one JWT at a time against `auth.jwt`."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self.algorithms = config.allowed
        self._secret = config.secret.get_secret_value() if config.secret is not None else None
        self._keys = _read_jwks(Path(config.jwks_file)) if config.jwks_file else None
        self._client = (PyJWKClient(config.jwks_url, cache_keys=True, lifespan=config.jwks_cache,
                                    timeout=JWKS_TIMEOUT) if config.jwks_url else None)

    async def verify(self, token: str) -> User:
        """The user a token names; raises Unauthorized saying which check failed."""
        header = _header(token)
        if str(header.get("alg", "")).lower() == "none":
            raise Unauthorized("the JWT is unsigned (alg: none); the proxy accepts only signed tokens")
        if header.get("alg") not in self.algorithms:
            raise Unauthorized(f"the JWT's algorithm {str(header.get('alg'))[:16]!r} is not one the proxy accepts "
                               f"({', '.join(self.algorithms)})")
        key = await self._key(token, header)
        try:
            claims = jwt.decode(token, key, algorithms=self.algorithms, audience=self.config.audience,
                                issuer=self.config.issuer, leeway=self.config.leeway, options=self._options())
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc)) from None
        return User(self._claim(claims, self.config.user_claim, required=True) or "", self._tier(claims))

    def _options(self) -> dict[str, Any]:
        required = ["exp"] if self.config.require_exp else []
        required += [name for name, value in (("aud", self.config.audience), ("iss", self.config.issuer)) if value]
        return {"require": required}

    async def _key(self, token: str, header: dict[str, Any]) -> Any:
        if self._secret is not None:
            return self._secret
        if self._keys is not None:
            return _from_set(self._keys, header.get("kid"))
        assert self._client is not None
        try:
            found: PyJWK = await anyio.to_thread.run_sync(self._client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            raise Overloaded("the identity provider's keys (JWKS) could not be fetched; try again shortly",
                             retry_after=5, type_="jwks_unavailable") from None
        except (jwt.PyJWKClientError, jwt.PyJWKError, jwt.DecodeError):
            raise Unauthorized("no key in the JWKS matches the JWT's kid") from None
        return found

    def _tier(self, claims: dict[str, Any]) -> str | None:
        if self.config.tier_claim is None:
            return None
        return self._claim(claims, self.config.tier_claim, required=False)

    def _claim(self, claims: dict[str, Any], name: str, *, required: bool) -> str | None:
        value = claims.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
            raise Unauthorized(f"the JWT's {name!r} claim is missing or not a string")
        if len(str(value)) > MAX_CLAIM:
            raise Unauthorized(f"the JWT's {name!r} claim is over {MAX_CLAIM} characters")
        return str(value)


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("the JWT is malformed") from None
    return header


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            if isinstance(exc, jwt.MissingRequiredClaimError):
                return f"the JWT lacks the required claim {exc.claim!r}"
            return reason
    return "the JWT is not valid"


def _read_jwks(path: Path) -> PyJWKSet:
    """Read once at start; a bad file stops the proxy from starting rather than refusing every user."""
    return PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _from_set(keys: PyJWKSet, kid: object) -> PyJWK:
    if kid is None and len(keys.keys) == 1:
        return keys.keys[0]
    for key in keys.keys:
        if key.key_id == kid:
            return key
    raise Unauthorized("no key in the JWKS matches the JWT's kid")
