"""The config of end-user identities (`auth.jwt`) and budgets (`budgets:`, a model's `price:`), issue 23.

Kept apart from proxy/config/__init__.py, which imports these classes; the loader there reads them like
any other section.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# HMAC algorithms take the shared secret; the others a public key from a JWKS. Never both for one
# verifier: a public key used as an HMAC secret is the classic algorithm-confusion forgery.
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                       "ES256", "ES384", "ES512", "EdDSA"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JwtConfig(_Section):
    """JWTs an app's backend signs for its users: a `secret` (HS*), or public keys (`jwks_url`/`jwks_file`)."""

    secret: SecretStr | None = Field(None, min_length=32)
    jwks_url: str | None = Field(None, pattern=r"^https?://")
    jwks_file: str | None = None
    jwks_cache: float = Field(300.0, gt=0)  # seconds the fetched keys are kept; an unknown kid refetches sooner
    algorithms: list[JwtAlgorithm] = Field(default_factory=list, min_length=0)  # empty: HS256, or RS256+ES256
    issuer: str | None = None
    audience: str | None = None
    user_claim: str = Field("sub", min_length=1)
    tier_claim: str | None = None
    leeway: float = Field(30.0, ge=0, le=600)  # seconds of clock skew allowed on exp, nbf and iat
    require_exp: bool = True  # a token without an expiry would be a password that never changes

    @model_validator(mode="after")
    def _one_kind_of_key(self) -> JwtConfig:
        sources = [x for x in (self.secret, self.jwks_url, self.jwks_file) if x is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of secret, jwks_url or jwks_file")
        wanted = HMAC_ALGORITHMS if self.secret is not None else KEY_ALGORITHMS
        wrong = [a for a in self.algorithms if a not in wanted]
        if wrong:
            kind = "a secret takes HS256/HS384/HS512" if self.secret is not None else "a JWKS takes RS*, PS*, ES* or EdDSA"
            raise ValueError(f"algorithms: {wrong[0]} does not fit the key: {kind}")
        return self

    @property
    def allowed(self) -> list[str]:
        if self.algorithms:
            return list(self.algorithms)
        return ["HS256"] if self.secret is not None else ["RS256", "ES256"]


class Budget(_Section):
    """Limits for one identity; any left out is not limited."""

    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    requests_per_minute: int | None = Field(None, ge=1)
    streams: int | None = Field(None, ge=1)  # open at once
    spend_per_day: float | None = Field(None, gt=0)  # in the currency of the models' prices


class BudgetsConfig(_Section):
    users: Budget | None = None  # every JWT user
    tiers: dict[str, Budget] = {}  # by the JWT's tier claim, over `users`
    keys: dict[str, Budget] = {}  # by client key id (the 12 hex digits the access log shows)
    estimate_chars_per_token: float = Field(4.0, gt=0)  # for streams that ended before their usage came


class Price(_Section):
    """Per million tokens."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)  # None: as input


def reference_only(jwt: object, loc: str, where: str, error: type[Exception]) -> None:
    """`auth.jwt.secret` must be a `${VAR}` reference, as `auth.token_secret` is: never the secret itself."""
    secret = jwt.get("secret") if isinstance(jwt, dict) else None
    if secret is not None and not (isinstance(secret, str) and re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", secret.strip())):
        raise error(f"{where}: {loc}: write a ${{VAR}} reference, not the secret itself")
