"""Two real proxy processes (the CLI) on one real redis-server share their deployments' breakers and
quotas exactly (issue 22); the state's Lua scripts against the real server; and a Redis that is gone
costs the sharing only."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from llm_sse_proxy.proxy.config import BreakerConfig
from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute
from llm_sse_proxy.proxy.state.routing import Taken, Wanted
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.routing_redis import PREFIX, RedisRouting
from tests.conftest import LOAD_TEST_LIMITS, chat_body
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import BEARER, replica_config, replicas, wait_healthy
from tests.upstream_fixtures import mock_upstream

pytestmark = pytest.mark.anyio


def routed_config(up: Any, east: str, **chat: Any) -> dict[str, Any]:
    deployments = [up.model("east", east), up.model("west", "m+key=west")]
    for deployment in deployments:
        deployment["api_key"] = "${UPSTREAM_KEY}"
    model = {"name": "chat", "strategy": "ordered", "deployments": deployments, **chat}
    return replica_config(models=[model], default_model="chat", limits=LOAD_TEST_LIMITS,
                          retry={"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.05})


async def deployment_of(client: httpx2.AsyncClient, url: str) -> str:
    response = await client.post(f"{url}/chat", json=chat_body(model="chat", events=["reasoning"]), headers=BEARER)
    assert response.status_code == 200, response.text
    frames = [line for line in response.text.splitlines() if line.startswith("data:")]
    terminate = json.loads(frames[-1][5:])
    assert terminate["reason"] == "stop", terminate
    return terminate["deployment"]


async def test_a_deployment_opened_on_one_replica_is_skipped_on_the_other(tmp_path: Path,
                                                                          redis_server: RedisServer) -> None:
    east = "m+key=east+fail=99:503"
    async with mock_upstream() as up:
        config = routed_config(up, east, breaker={"failures": 2, "open_for": 120})
        env = {"REDIS_URL": redis_server.url, "UPSTREAM_KEY": "sk-replica-upstream-key"}
        with replicas(tmp_path, config, env) as (a, b):
            await wait_healthy(a, b)
            async with httpx2.AsyncClient(timeout=20) as client:
                on_a = [await deployment_of(client, a.url) for _ in range(2)]  # east fails twice: open
                with anyio.fail_after(10):  # A reports in the background: wait for the breaker to land
                    while redis_server.command("HGET", f"{PREFIX}chat/east:state", "open_until") == b"$-1":
                        await anyio.sleep(0.02)
                on_b = [await deployment_of(client, b.url) for _ in range(5)]
    assert on_a == ["west", "west"] and on_b == ["west"] * 5
    assert up.recorder.count(east) == 2  # B never asked it


async def test_a_quota_is_shared_exactly_in_a_burst_on_both(tmp_path: Path, redis_server: RedisServer) -> None:
    async with mock_upstream() as up:
        config = routed_config(up, "m+key=east+rpm=6")
        config["models"][0]["deployments"][0]["rpm"] = 6
        env = {"REDIS_URL": redis_server.url, "UPSTREAM_KEY": "sk-replica-upstream-key"}
        with replicas(tmp_path, config, env) as (a, b):
            await wait_healthy(a, b)
            answered: list[str] = []
            async with httpx2.AsyncClient(timeout=30) as client:

                async def one(url: str) -> None:
                    answered.append(await deployment_of(client, url))

                with anyio.fail_after(60):
                    async with anyio.create_task_group() as group:
                        for i in range(30):
                            group.start_soon(one, (a.url, b.url)[i % 2])
    east = [attempt for attempt in up.recorder.attempts if attempt.key == "east"]
    assert len(east) == 6 and all(attempt.status == 200 for attempt in east)  # 6 in all, not 6 per replica; no 429
    assert Counter(answered) == {"east": 6, "west": 24}


def chain_of(*quotas: dict[str, int], failures: int = 2) -> list[ModelRoute]:
    deployments = tuple(Deployment(f"t/{i}", str(i), None, **q) for i, q in enumerate(quotas))  # type: ignore[arg-type]
    return [ModelRoute("t", deployments, "least_busy", BreakerConfig(failures=failures, open_for=60))]


async def test_the_scripts_take_count_and_release_on_the_real_server(redis_server: RedisServer) -> None:
    errors: list[str] = []
    chain = chain_of({"rpm": 2}, {"tpm": 10})
    async with SharedRedis(redis_server.url, on_error=errors.append) as first, \
            SharedRedis(redis_server.url, on_error=errors.append) as second, \
            RedisRouting(first) as one, RedisRouting(second) as other:
        wanted = Wanted(chain, range(1), lease=60)
        taken: list[Taken] = []
        for i in range(6):  # the two replicas in turn, until neither deployment may be asked
            state = (one, other)[i % 2]
            got = await state.take(wanted)
            if not isinstance(got, Taken):
                break
            taken.append(got)
            if got.index == 1:  # its 10 tokens spend its tpm
                state.release(chain[0].deployments[1], got, 10)
                await state.drained()  # type: ignore[attr-defined]
        assert Counter(t.index for t in taken) == {0: 2, 1: 1}  # rpm 2, tpm 10: exact across both
        assert isinstance(got, float) and got > 0  # the seconds until one may be asked
        breaking = chain[0].deployments[1]
        one.failed(breaking, taken[0], chain[0], None)
        one.failed(breaking, taken[0], chain[0], None)
        await one.drained()
        assert redis_server.command("HGET", f"{PREFIX}t/1:state", "open_until") != b"$-1"
    assert errors == []


async def test_a_redis_that_is_gone_costs_the_sharing_only(redis_server: RedisServer) -> None:
    errors: list[str] = []
    chain = chain_of({}, failures=1)
    async with SharedRedis(redis_server.url, on_error=errors.append) as shared, RedisRouting(shared) as state:
        redis_server.stop()
        with anyio.fail_after(10):
            taken = await state.take(Wanted(chain, range(1)))  # this process's own view answers
            assert isinstance(taken, Taken)
            state.failed(chain[0].deployments[0], taken, chain[0], None)
            await state.drained()
            assert isinstance(await state.take(Wanted(chain, range(1))), float)  # its own breaker still opens
    assert errors[:2] == ["routing_take", "routing_failed"]
