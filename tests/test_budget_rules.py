"""The budgets' pure rules, as tables: admission (`decide`), the bill of a stream (`bill_of`), the prompt's
estimate, and which budget an identity has."""

from __future__ import annotations

import asyncio

import pytest

from llm_sse_proxy.proxy.admission.auth import Client, client_of, token_subject
from llm_sse_proxy.proxy.admission.budgets import Budgets, bill_of, estimate_prompt, meters_of
from llm_sse_proxy.proxy.config.budgets import Budget, Price
from llm_sse_proxy.proxy.deltas import ChatRequest, Message, Usage
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.state import budgets as budget_state
from llm_sse_proxy.proxy.state.budgets import Ask, MemoryBudgets, Meter, Refusal, decide
from tests.conftest import make_config

TOKENS = Meter("tokens_per_minute", "tokens", 60, 100)
REQUESTS = Meter("requests_per_minute", "requests", 60, 2)
SPEND = Meter("spend_per_day", "spend", 86_400, 1_000)


@pytest.mark.parametrize(("meters", "used", "ask", "now", "expected"), [
    ([TOKENS], [0], Ask(10, 50), 5.0, ("granted", 50, (60,))),
    ([TOKENS], [60], Ask(10, 50), 5.0, ("granted", 40, (50,))),  # capped to what is left; the prompt may overrun
    ([TOKENS], [100], Ask(10, 50), 5.0, ("refused", "tokens_per_minute", 55.0)),
    ([TOKENS], [130], Ask(10, 50), 59.5, ("refused", "tokens_per_minute", 0.5)),  # overrun by a settle: still refused
    ([REQUESTS, TOKENS], [2, 0], Ask(10, 50), 0.0, ("refused", "requests_per_minute", 60.0)),
    ([REQUESTS, TOKENS], [1, 0], Ask(10, 50), 0.0, ("granted", 50, (1, 60))),
    ([SPEND], [0], Ask(10, 500, input_price=2, output_price=10), 0.0, ("granted", 100, (10 * 2 + 100 * 10,))),
    ([SPEND], [995], Ask(10, 500, input_price=2, output_price=10), 0.0, ("refused", "spend_per_day", 86_400.0)),
    ([SPEND], [0], Ask(10, 500), 0.0, ("granted", 500, (0,))),  # unpriced: spend does not cap
])
def test_decide(meters: list[Meter], used: list[int], ask: Ask, now: float, expected: tuple) -> None:
    decision = decide(meters, used, ask, now)
    if isinstance(decision, Refusal):
        assert ("refused", decision.meter.name, decision.retry_after) == expected
    else:
        assert ("granted", decision.max_tokens, tuple(c.amount for c in decision.charges)) == expected


def outcome(**fields: object) -> Outcome:
    done = Outcome()
    for name, value in fields.items():
        setattr(done, name, value)
    return done


@pytest.mark.parametrize(("ended", "expected"), [
    # finished, with usage: billed as said
    (outcome(reason="stop", attempts=1, usage=Usage(7, 20), text_chars=80), (7, 20, False)),
    # cut by the upstream after 40 characters, no usage: prompt + 40 / 4
    (outcome(reason="error", attempts=1, text_chars=40, unmetered=[40]), (5, 10, True)),
    # refused before any text: not billed
    (outcome(reason="error", attempts=3), (0, 0, False)),
    # the client left after 9 characters: prompt + ceil(9 / 4)
    (outcome(reason="cancelled", attempts=1, text_chars=9), (5, 3, True)),
    # recovered: the first attempt (20 characters, no usage) estimated, the second as said
    (outcome(reason="stop", attempts=2, usage=Usage(9, 6), text_chars=44, unmetered=[20]), (14, 11, True)),
    # a failed attempt that said its usage, then the client left mid-way through the next
    (outcome(reason="cancelled", attempts=2, spent=Usage(7, 3), text_chars=12), (12, 6, True)),
])
def test_bill_of(ended: Outcome, expected: tuple[int, int, bool]) -> None:
    bill = bill_of(ended, prompt=5, chars_per_token=4.0, price=None)
    assert (bill.input_tokens, bill.output_tokens, bill.estimated) == expected and bill.cost == 0.0


def test_a_bill_is_priced_per_million_with_cached_input_apart() -> None:
    ended = outcome(reason="stop", attempts=1, usage=Usage(1_000, 500, cached_tokens=400))
    bill = bill_of(ended, prompt=5, chars_per_token=4.0, price=Price(input=2.0, output=8.0, cached_input=0.5))
    assert bill.cost == pytest.approx((600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6)


@pytest.mark.parametrize(("texts", "expected"), [(["hi"], 1 + 4), (["a" * 400], 100 + 4), (["abc", "defgh"], 2 + 8)])
def test_estimate_prompt(texts: list[str], expected: int) -> None:
    request = ChatRequest(messages=tuple(Message("user", t) for t in texts))
    assert estimate_prompt(request, 4.0) == expected


def test_which_budget_an_identity_has() -> None:
    budgets = {"users": {"tokens_per_minute": 10, "tokens_per_day": 100}, "tiers": {"pro": {"tokens_per_day": 1000}},
               "keys": {"93ba56cccdc1": {"requests_per_minute": 5}}}
    policy = Budgets(make_config(budgets=budgets), MemoryBudgets())
    pro = policy.budget_for(Client("user:a", True, tier="pro"))
    assert pro == Budget(tokens_per_minute=10, tokens_per_day=1000)
    assert policy.budget_for(Client("user:a", True, tier="gold")) == Budget(tokens_per_minute=10, tokens_per_day=100)
    assert policy.budget_for(Client("key:93ba56cccdc1", True)) == Budget(requests_per_minute=5)
    assert policy.budget_for(Client("key:other", True)) is None and policy.budget_for(Client("ip:1.2.3.4", False)) is None
    assert [m.name for m in meters_of(pro)] == ["tokens_per_minute", "tokens_per_day"]
    assert policy.tier_label(Client("user:a", True, tier="gold")) == "users"


@pytest.mark.parametrize("client", [Client("user:alice", True, tier="pro"), Client("user:a.b:c~d", True),
                                    Client("key:93ba56cccdc1", True)])
def test_a_stream_token_carries_its_client(client: Client) -> None:
    subject = token_subject(client)
    assert "." not in subject and client_of(subject) == client


def test_memory_budgets_forget_only_windows_that_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    store = MemoryBudgets(clock=lambda: clock[0])
    monkeypatch.setattr(budget_state, "MAX_COUNTERS", 2)

    async def scenario() -> list[int]:
        await store.reserve("user:a", [TOKENS], Ask(1, 1))
        clock[0] = 61.0
        await store.reserve("user:b", [TOKENS], Ask(1, 1))
        await store.reserve("user:c", [TOKENS], Ask(1, 1))  # over 2 counters: a's ended window goes
        return [(await store.read(u, [TOKENS]))[0].used for u in ("user:a", "user:b", "user:c")]

    assert asyncio.run(scenario()) == [0, 2, 2] and len(store._counters) == 2
