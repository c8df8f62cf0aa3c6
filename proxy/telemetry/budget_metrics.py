"""What the streams were billed, by model and tier, and the requests a budget refused (issue 23).

Labelled by tier, never by user: users are unbounded, tiers are the configured few (an unknown tier
claim counts as `users`, a client key as `keys`, an IP as `other`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BudgetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter("llm_proxy_billed_tokens", "Tokens billed to identities, by model, tier and whether "
                              "estimated", ["model", "tier", "estimated"], registry=registry)
        self.cost = Counter("llm_proxy_billed_cost", "Cost billed, in the prices' currency, by model and tier",
                            ["model", "tier"], registry=registry)
        self.refused = Counter("llm_proxy_budget_refusals", "Requests a spent budget refused, by budget and tier",
                               ["budget", "tier"], registry=registry)

    def billed(self, model: str, tier: str, tokens: int, cost: float, estimated: bool) -> None:
        self.tokens.labels(model, tier, "yes" if estimated else "no").inc(tokens)
        if cost:
            self.cost.labels(model, tier).inc(cost)

    def refusal(self, budget: str, tier: str) -> None:
        self.refused.labels(budget, tier).inc()
