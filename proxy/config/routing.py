"""The config of many deployments behind one model (issue 22): `deployments:`, `strategy:`, `breaker:`.

A model may list `deployments:`, each with the keys a model's upstream has (`adapter`, its options such
as `base_url`, `api_key`, `model`) plus `name`, `weight`, `rpm` and `tpm`. A model without them is one
deployment made of its own `adapter` and options (proxy/routing/deployments.py), so a config that
worked before works the same, with the same bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.proxy.config.errors import close_match, describe

Strategy = Literal["weighted", "least_busy", "latency", "ordered"]
DEPLOYMENT_KEYS = frozenset({"name", "adapter", "weight", "rpm", "tpm"})
# What a model with deployments may have beside them (the rest is each deployment's).
_MODEL_KEYS = frozenset({"name", "fallbacks", "max_tokens_cap", "reasoning", "recovery", "continue_with", "strategy",
                         "breaker", "deployments", "price"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerConfig(_Section):
    """A deployment that fails `failures` times within `window` seconds is left alone for `open_for`
    seconds, then gets one request (half-open); `failures: 0` turns the breaker off (a 429's
    Retry-After still holds the deployment off, as `retry.cooldown_max` allows)."""

    failures: int = Field(5, ge=0)
    window: float = Field(30.0, gt=0)
    open_for: float = Field(30.0, gt=0)


class BreakerOverride(_Section):
    """A model's own breaker: the keys it gives replace the top-level `breaker:`'s."""

    failures: int | None = Field(None, ge=0)
    window: float | None = Field(None, gt=0)
    open_for: float | None = Field(None, gt=0)

    def over(self, base: BreakerConfig) -> BreakerConfig:
        return base.model_copy(update=self.model_dump(exclude_none=True))


class DeploymentConfig(_Section):
    name: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")  # default: its index
    adapter: str
    weight: float = Field(1.0, gt=0)
    rpm: int | None = Field(None, ge=1)  # the provider's requests per minute for this deployment
    tpm: int | None = Field(None, ge=1)  # and its tokens per minute (counted from usage as streams end)
    options: Any = None  # the adapter's own options model, validated by its spec


class DeploymentProblem(ValueError):
    """A deployment that does not validate; the message names the field (never its value)."""


Warn = Callable[[int, type[BaseModel], str], None]  # told of each deployment's options, to warn of written keys


def routed(model: dict[str, Any], loc: str, warn: Warn) -> list[DeploymentConfig]:
    """A model's `deployments:`, already substituted: a non-empty list, no adapter beside it, names unique."""
    entries = model["deployments"]
    if not isinstance(entries, list) or not entries:
        raise DeploymentProblem(f"{loc}.deployments: a non-empty list of deployments")
    beside = sorted(str(k) for k in model if k not in _MODEL_KEYS)
    if beside:
        raise DeploymentProblem(f"{loc}.{beside[0]}: a model with deployments takes this key in each deployment")
    deployments = [parse_deployment(entry, f"{loc}.deployments[{i}]", i, warn) for i, entry in enumerate(entries)]
    names = [d.name or str(i) for i, d in enumerate(deployments)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DeploymentProblem(f"{loc}.deployments: duplicate name {duplicates[0]!r}")
    return deployments


def as_mock(entries: Any) -> Any:
    """`--mock`: every deployment answers from the offline mock, with its name, weight and quotas kept."""
    if not isinstance(entries, list):
        return entries
    return [{k: v for k, v in e.items() if k in DEPLOYMENT_KEYS} | {"adapter": "mock"} if isinstance(e, dict) else e
            for e in entries]


def parse_deployment(raw: Any, loc: str, index: int, warn: Warn) -> DeploymentConfig:
    """One `deployments:` entry, already substituted."""
    if not isinstance(raw, dict):
        raise DeploymentProblem(f"{loc}: each deployment must be a mapping")
    spec = REGISTRY.get(raw.get("adapter"))  # type: ignore[arg-type]
    if spec is None:
        raise DeploymentProblem(_adapter_problem(raw, loc))
    warn(index, spec.options, loc)
    try:
        options = spec.options.model_validate({k: v for k, v in raw.items() if k not in DEPLOYMENT_KEYS})
        return DeploymentConfig.model_validate({**{k: raw[k] for k in DEPLOYMENT_KEYS if k in raw}, "options": options})
    except ValidationError as exc:
        known = {*DEPLOYMENT_KEYS, *spec.options.model_fields}
        raise DeploymentProblem(f"{loc}.{describe(exc.errors()[0], known)}") from None


def _adapter_problem(raw: dict[str, Any], loc: str) -> str:
    known = ", ".join(sorted(REGISTRY))
    if "adapter" in raw:
        return f"{loc}.adapter: unknown adapter {raw['adapter']!r} (known: {known})"
    misspelled = close_match("adapter", [str(key) for key in raw])
    if misspelled is not None:
        return f"{loc}.{misspelled}: unknown key; did you mean 'adapter'?"
    return f"{loc}.adapter: required (one of: {known})"
