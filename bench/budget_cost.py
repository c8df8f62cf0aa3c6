"""What budgets (issue 23) cost a request: `Budgets.reserve` before the upstream and `settle` at the end,
in process, with no budget (off), the in-memory store, and Redis (a redis-server this starts on a free
loopback port, in a temp dir). Per chunk they cost nothing of their own: the relay counts the text it
relays (`len`) for every stream, budgets or not (bench/relay_cpu.py --against measures that).

    python -m bench.budget_cost [--requests 2000] [--rounds 5]   # from the checkout's root

Prints the median over rounds of µs per request (reserve + settle; for Redis, settle's round trip is
awaited, as it runs in a task after the stream).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.admission.budgets import Budgets
from llm_sse_proxy.proxy.deltas import ChatRequest, Message, Usage
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.state.budgets import BudgetStore, MemoryBudgets
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.redis_budgets import RedisBudgets
from tests.conftest import make_config
from tests.redis_fixtures import run_redis_server

BUDGET = {"users": {"tokens_per_minute": 10**12, "tokens_per_day": 10**12, "requests_per_minute": 10**9,
                    "spend_per_day": 10**6}}
MODEL = {"name": "mock", "adapter": "mock", "price": {"input": 0.15, "output": 0.6}}
REQUEST = ChatRequest(messages=(Message("user", "Tell me about Server-Sent Events."),), max_tokens=256)


async def per_request(budgets: Budgets, requests: int) -> float:
    """µs per request: reserve, then settle with a finished stream's usage."""
    outcome = Outcome(reason="stop", model="mock", attempts=1, usage=Usage(12, 200))
    clients = [Client(f"user:u{i % 100}", True) for i in range(requests)]
    started = time.perf_counter()
    for client in clients:
        _, reservation = await budgets.reserve(client, REQUEST, "mock")
        bill = budgets.bill(outcome, 12)
        if reservation is not None:
            budgets.settle(reservation, bill)
    if isinstance(budgets.store, RedisBudgets):
        await budgets.store.settled()
    return (time.perf_counter() - started) / requests * 1e6


async def rounds(budgets: Budgets, requests: int, count: int) -> float:
    return statistics.median([await per_request(budgets, requests) for _ in range(count)])


async def main(requests: int, count: int) -> None:
    off = Budgets(make_config([MODEL]), MemoryBudgets())
    on = make_config([MODEL], budgets=BUDGET)
    figures = {"off": await rounds(off, requests, count)}
    async with MemoryBudgets() as memory:
        figures["memory"] = await rounds(Budgets(on, memory), requests, count)
    with tempfile.TemporaryDirectory() as tmp, run_redis_server(Path(tmp)) as server:
        store: BudgetStore
        async with SharedRedis(server.url) as redis, RedisBudgets(redis) as store:
            figures["redis"] = await rounds(Budgets(on, store), requests, count)
    for name, micros in figures.items():
        print(f"{name:7s} {micros:8.1f} µs per request (reserve + settle), median of {count} rounds of {requests}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
