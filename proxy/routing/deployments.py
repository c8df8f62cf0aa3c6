"""A model's deployments as the relay and the state see them: built once, in the lifespan, from the config.

A model without `deployments:` is one deployment, labelled "0", made of the model's own adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_sse_proxy.proxy.config import BreakerConfig
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_sse_proxy.proxy.relay.relay import Upstream


@dataclass(frozen=True, slots=True)
class Deployment:
    key: str  # `<model>/<label>`: where its shared state lives, the same on every replica
    label: str  # its configured `name`, else its index: what the access log and metrics call it
    upstream: Upstream  # the model's name, with this deployment's adapter
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    listed: bool = False  # the model lists `deployments:`; else clients never hear of this one (same bytes as before)


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One model of a chain: how it picks among its deployments, and its breaker."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: str = "weighted"
    breaker: BreakerConfig = BreakerConfig()

    @property
    def measures_latency(self) -> bool:
        return self.strategy == "latency" and len(self.deployments) > 1
