"""Budgets per identity (issue 23): which one applies, what a request may cost, the bill at its end.

An end user (`user:<id>`, from a JWT) has `budgets.users`, overridden field by field by
`budgets.tiers.<tier>`; a client key (`key:<id>`) has `budgets.keys.<id>`; an IP has none. Before the
upstream is called, the request's worst case is reserved: its prompt (estimated from its characters)
plus `max_tokens`, which is capped to what every meter has left, so a budget is overrun by at most one
answer's prompt. When the stream ends the reservation is replaced by the bill: the upstream's usage when
it said, else an estimate (see `bill_of`), which the access line marks as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.config.budgets import Budget, Price
from llm_sse_proxy.proxy.deltas import ChatRequest
from llm_sse_proxy.proxy.errors import BudgetExceeded
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.state.budgets import DAY, MINUTE, Ask, BudgetStore, Grant, Meter, Reading

NANO = 1_000_000_000  # spend is counted in nano-units of the prices' currency: integers, exactly
UNCAPPED = 2**31 - 1  # a request with no max_tokens may use what is left
MESSAGE_OVERHEAD = 4  # tokens a chat template adds per message, about (OpenAI's cookbook counts 3 to 4)


@dataclass(frozen=True, slots=True)
class Bill:
    input_tokens: int
    output_tokens: int
    cost: float  # in the prices' currency
    estimated: bool

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Reservation:
    identity: str
    tier: str  # a metrics label: the configured tier, "users", "keys" or "other"
    grant: Grant
    prompt: int


class Budgets:
    def __init__(self, config: Config, store: BudgetStore) -> None:
        self.config = config.budgets
        self.store = store
        self.prices = {m.name: m.price for m in config.models if m.price is not None}

    def prompt_of(self, request: ChatRequest) -> int:
        return estimate_prompt(request, self.config.estimate_chars_per_token)

    def bill(self, outcome: Outcome, prompt: int) -> Bill:
        """What a stream used (see `bill_of`), priced by the model that answered."""
        price = self.prices.get(outcome.model or "")
        return bill_of(outcome, prompt, self.config.estimate_chars_per_token, price)

    def budget_for(self, client: Client) -> Budget | None:
        kind, _, name = client.identity.partition(":")
        if kind == "key":
            return self.config.keys.get(name)
        if kind != "user":
            return None
        base, tier = self.config.users, self.config.tiers.get(client.tier or "")
        if base is None or tier is None:
            return tier or base
        return base.model_copy(update=tier.model_dump(exclude_unset=True))

    def tier_label(self, client: Client) -> str:
        kind = client.identity.partition(":")[0]
        if kind != "user":
            return "keys" if kind == "key" else "other"
        return client.tier if client.tier in self.config.tiers else "users"

    async def reserve(self, client: Client, request: ChatRequest, model: str) -> tuple[ChatRequest, Reservation | None]:
        """Charge the request's worst case, or raise BudgetExceeded; the request comes back capped."""
        budget = self.budget_for(client)
        meters = meters_of(budget) if budget is not None else []
        if not meters:
            return request, None
        prompt = self.prompt_of(request)
        price = self.prices.get(model)
        ask = Ask(prompt, request.max_tokens or UNCAPPED, _nano(price.input) if price else 0,
                  _nano(price.output) if price else 0)
        decision = await self.store.reserve(client.identity, meters, ask)
        if not isinstance(decision, Grant):
            raise BudgetExceeded(decision.meter.name, _shown(decision.meter), max(1, math.ceil(decision.retry_after)))
        if decision.max_tokens < ask.max_tokens:
            request = replace(request, max_tokens=decision.max_tokens)
        return request, Reservation(client.identity, self.tier_label(client), decision, prompt)

    def settle(self, reservation: Reservation, bill: Bill) -> None:
        """Replace the reservation by the bill (applied now, or soon with Redis)."""
        spent = math.ceil(bill.cost * NANO)
        corrections = []
        for charge in reservation.grant.charges:
            used = {"tokens": bill.tokens, "spend": spent, "requests": charge.amount}[charge.meter.kind]
            corrections.append((charge, used - charge.amount))
        self.store.settle(reservation.identity, corrections)

    async def usage(self, identity: str, budget: Budget | None) -> list[dict[str, Any]]:
        """Each meter's used and left in its window, for GET /usage."""
        meters = meters_of(budget) if budget is not None else []
        readings = await self.store.read(identity, meters) if meters else []
        return [_shown_reading(r) for r in readings]

    async def reset(self, identity: str, budget: Budget | None) -> None:
        if budget is not None:
            await self.store.reset(identity, meters_of(budget))


def meters_of(budget: Budget) -> list[Meter]:
    """A budget's limits as meters, spend in nano-units; `streams` is the stream gate's, not a meter."""
    meters = []
    for name, kind, window in (("requests_per_minute", "requests", MINUTE), ("tokens_per_minute", "tokens", MINUTE),
                               ("tokens_per_day", "tokens", DAY)):
        limit = getattr(budget, name)
        if limit is not None:
            meters.append(Meter(name, kind, window, int(limit)))  # type: ignore[arg-type]
    if budget.spend_per_day is not None:
        meters.append(Meter("spend_per_day", "spend", DAY, math.floor(budget.spend_per_day * NANO)))
    return meters


def estimate_prompt(request: ChatRequest, chars_per_token: float) -> int:
    """Tokens a prompt will cost, about: its characters / chars_per_token, plus each message's overhead."""
    chars = sum(len(m.text) for m in request.messages)
    return math.ceil(chars / chars_per_token) + MESSAGE_OVERHEAD * len(request.messages)


def bill_of(outcome: Outcome, prompt: int, chars_per_token: float, price: Price | None) -> Bill:
    """What a stream used. The upstream's usage where it said (`outcome.usage`, or `outcome.spent` for
    failed attempts that said); each attempt that relayed text without saying is estimated as the prompt
    plus its text's characters / chars_per_token, and so is the attempt under way when the client left.
    An attempt that failed before any text is not billed: providers do not bill a refused request."""
    known = outcome.usage if outcome.usage is not None else outcome.spent
    tokens_in = known.prompt_tokens if known else 0
    tokens_out = known.completion_tokens if known else 0
    cached = (known.cached_tokens or 0) if known else 0
    estimated = [*outcome.unmetered]
    if outcome.usage is None and outcome.reason != "error" and outcome.attempts:
        estimated.append(outcome.text_chars - sum(outcome.unmetered))  # the attempt the client cut short
    tokens_in += prompt * len(estimated)
    tokens_out += sum(math.ceil(chars / chars_per_token) for chars in estimated)
    return Bill(tokens_in, tokens_out, _cost(price, tokens_in, cached, tokens_out), bool(estimated))


def _cost(price: Price | None, tokens_in: int, cached: int, tokens_out: int) -> float:
    if price is None:
        return 0.0
    cached_price = price.input if price.cached_input is None else price.cached_input
    return ((tokens_in - cached) * price.input + cached * cached_price + tokens_out * price.output) / 1_000_000


def _nano(per_million: float) -> int:
    return math.ceil(per_million * NANO / 1_000_000)


def _shown(meter: Meter) -> int | float:
    return meter.limit / NANO if meter.kind == "spend" else meter.limit


def _shown_reading(reading: Reading) -> dict[str, Any]:
    meter = reading.meter
    used, left = (reading.used / NANO, reading.left / NANO) if meter.kind == "spend" else (reading.used, reading.left)
    return {"budget": meter.name, "limit": _shown(meter), "used": used, "left": left,
            "resets_in": math.ceil(reading.resets_in)}
