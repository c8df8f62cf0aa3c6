"""Budgets in Redis (issue 23): the same rule as in memory, exact across two real proxy processes sharing
one real redis-server, and closed (503, nothing admitted) when Redis is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest

from llm_sse_proxy.proxy.state.budgets import Ask, BudgetStore, Grant, MemoryBudgets, Meter, Refusal
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.redis_budgets import RedisBudgets
from tests.conftest import LOAD_TEST_LIMITS, chat_body
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import replica_config, replicas, wait_healthy

pytestmark = pytest.mark.anyio

SECRET = "a-shared-secret-of-32-characters-or-more"
MOCK = {"name": "mock", "adapter": "mock", "reply": "one two three four five six seven eight nine ten",
        "chunk_chars": 5, "chunk_delay_ms": 0}
TOKENS = Meter("tokens_per_minute", "tokens", 60, 30)
REQUESTS = Meter("requests_per_minute", "requests", 60, 3)
SPEND = Meter("spend_per_day", "spend", 86_400, 1_000)


def user(sub: str = "alice") -> dict[str, str]:
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def stores(server: RedisServer) -> AsyncIterator[tuple[BudgetStore, BudgetStore]]:
    async with SharedRedis(server.url) as redis, RedisBudgets(redis) as shared, MemoryBudgets() as local:
        yield shared, local


def outline(decision: Grant | Refusal) -> tuple[Any, ...]:
    if isinstance(decision, Refusal):
        return ("refused", decision.meter.name)
    return ("granted", decision.max_tokens, tuple(c.amount for c in decision.charges))


SCENARIOS = [  # (meters, asks, what each ask gets)
    ([REQUESTS, TOKENS, SPEND], [Ask(5, 10), Ask(5, 100), Ask(5, 10)],
     [("granted", 10, (1, 15, 0)), ("granted", 15, (1, 20, 0)), ("refused", "tokens_per_minute")]),
    ([REQUESTS], [Ask(1, 1)] * 4, [("granted", 1, (1,))] * 3 + [("refused", "requests_per_minute")]),
    ([SPEND], [Ask(5, 100, input_price=10, output_price=20)] * 2,
     [("granted", 50, (5 * 10 + 50 * 20,)), ("refused", "spend_per_day")]),
]


@pytest.mark.parametrize(("meters", "asks", "expected"), SCENARIOS)
async def test_redis_follows_the_same_rule_as_memory(redis_server: RedisServer, meters: list[Meter],
                                                     asks: list[Ask], expected: list[tuple[Any, ...]]) -> None:
    async with stores(redis_server) as (shared, local):
        for store in (shared, local):
            assert [outline(await store.reserve("user:alice", meters, ask)) for ask in asks] == expected


async def test_a_settle_corrects_the_window_it_was_charged_in(redis_server: RedisServer) -> None:
    async with stores(redis_server) as (shared, local):
        for store in (shared, local):
            grant = await store.reserve("user:bob", [TOKENS], Ask(5, 20))
            assert isinstance(grant, Grant) and grant.max_tokens == 20
            store.settle("user:bob", [(grant.charges[0], 8 - 25)])  # used 8 of the 25 reserved
            if isinstance(store, RedisBudgets):
                await store.settled()
            [reading] = await store.read("user:bob", [TOKENS])
            assert reading.used == 8 and reading.left == 22
            await store.reset("user:bob", [TOKENS])
            assert (await store.read("user:bob", [TOKENS]))[0].used == 0


def budget_config(budgets: dict[str, Any]) -> dict[str, Any]:
    config = replica_config(budgets=budgets, limits=LOAD_TEST_LIMITS)
    config["auth"] = {**config["auth"], "jwt": {"secret": "${JWT_SECRET}"}}
    config["models"], config["default_model"] = [MOCK], "mock"
    return config


async def test_100_concurrent_requests_over_two_replicas_admit_exactly_10(tmp_path: Path,
                                                                         redis_server: RedisServer) -> None:
    # As in test_budgets.py: the prompt's estimate and the mock's count agree, so settles free nothing.
    budgets = {"users": {"tokens_per_minute": 10 * (8 + 5), "requests_per_minute": 1000}}
    env = {"REDIS_URL": redis_server.url, "JWT_SECRET": SECRET}
    with replicas(tmp_path, budget_config(budgets), env) as (a, b):
        await wait_healthy(a, b)
        headers, body = user(), chat_body("a b c d e f g h", max_tokens=5)
        async with httpx2.AsyncClient(timeout=30, limits=httpx2.Limits(max_connections=None)) as client:
            responses = await asyncio.gather(*[client.post(f"{(a, b)[i % 2].url}/chat", json=body, headers=headers)
                                               for i in range(100)])
            shown = (await client.get(f"{a.url}/usage", headers=headers)).json()
    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [200] * 10 + [429] * 90, statuses
    assert {r.json()["error"]["type"] for r in responses if r.status_code == 429} == {"budget_exceeded"}
    assert {b["budget"]: b["used"] for b in shown["budgets"]}["tokens_per_minute"] == 130
    by_replica = [sum(1 for i, r in enumerate(responses) if r.status_code == 200 and i % 2 == k) for k in (0, 1)]
    assert sum(by_replica) == 10  # wherever they landed, 10 in all, not 10 per replica


async def test_redis_down_is_a_503_and_never_admits_past_the_budget(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {"REDIS_URL": redis_server.url, "JWT_SECRET": SECRET}
    with replicas(tmp_path, budget_config({"users": {"requests_per_minute": 2}}), env, count=1) as (a,):
        await wait_healthy(a)
        async with httpx2.AsyncClient(timeout=15) as client:
            first = await client.post(f"{a.url}/chat", json=chat_body(), headers=user())
            redis_server.stop()
            down = [await client.post(f"{a.url}/chat", json=chat_body(), headers=user()) for _ in range(3)]
            usage = await client.get(f"{a.url}/usage", headers=user())
    assert first.status_code == 200
    for response in (*down, usage):
        assert response.status_code == 503 and response.json()["error"]["type"] == "store_unavailable"
