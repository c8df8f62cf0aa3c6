"""Two real proxy processes (the CLI) against one real redis-server: limits and tokens are shared.

Redis down: every request that needs the shared state gets a prompt 503 `store_unavailable`, with a
log line and a metric, never a hang and never a silent fall back to per-process limits.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from tests.conftest import chat_body
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import BEARER, replica_config, replicas, wait_healthy

pytestmark = pytest.mark.anyio


async def test_a_token_used_on_one_replica_is_refused_on_the_other(tmp_path: Path, redis_server: RedisServer) -> None:
    with replicas(tmp_path, replica_config(), {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=10) as client:
            token = (await client.post(f"{a.url}/token", headers=BEARER)).json()["token"]
            first = await client.get(f"{a.url}/stream", params={"token": token})
            replayed = await client.get(f"{b.url}/stream", params={"token": token})
            other = (await client.post(f"{a.url}/token", headers=BEARER)).json()["token"]
            travelled = await client.get(f"{b.url}/stream", params={"token": other})  # issued on A, first used on B
    assert first.status_code == 200 and b'"action":"terminate"' in first.content
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]["message"]
    assert travelled.status_code == 200


async def test_the_rate_limit_is_shared_exactly(tmp_path: Path, redis_server: RedisServer) -> None:
    config = replica_config(limits={"requests_per_minute": 1, "burst": 3})
    with replicas(tmp_path, config, {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=10) as client:
            statuses = [(await client.post(f"{r.url}/token", headers=BEARER)).status_code for r in (a, b, a, b, a)]
            refused = await client.post(f"{b.url}/token", headers=BEARER)
    assert statuses == [200, 200, 200, 429, 429]  # a burst of 3 in all, not 3 per replica
    assert refused.json()["error"]["type"] == "rate_limited" and refused.headers["retry-after"] == "60"


async def test_stream_slots_are_shared_and_come_back(tmp_path: Path, redis_server: RedisServer) -> None:
    config = replica_config(limits={"streams_per_client": 1})
    with replicas(tmp_path, config, {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=10) as client:
            async with client.stream("POST", f"{a.url}/chat", json=chat_body(), headers=BEARER) as held:
                assert held.status_code == 200
                refused = await client.post(f"{b.url}/chat", json=chat_body(), headers=BEARER)
                await held.aread()
            with anyio.fail_after(20):  # A gives its slot back once the stream has ended
                while (after := await client.post(f"{b.url}/chat", json=chat_body(),
                                                  headers=BEARER)).status_code != 200:
                    assert after.status_code == 429
                    await anyio.sleep(0.05)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_streams"


async def test_redis_down_is_a_prompt_503_with_a_log_line_and_a_metric(tmp_path: Path,
                                                                       redis_server: RedisServer) -> None:
    with replicas(tmp_path, replica_config(), {"REDIS_URL": redis_server.url}, count=1) as (a,):
        await wait_healthy(a)
        async with httpx2.AsyncClient(timeout=10) as client:
            ok = await client.post(f"{a.url}/chat", json=chat_body(), headers=BEARER)
            redis_server.stop()
            with anyio.fail_after(15):  # about a second each; the bound only proves "does not hang"
                down = [await client.post(f"{a.url}/chat", json=chat_body(), headers=BEARER) for _ in range(2)]
                token = await client.post(f"{a.url}/token", headers=BEARER)
            metrics = (await client.get(f"{a.url}/metrics")).text
    assert ok.status_code == 200
    for response in (*down, token):
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "store_unavailable"
    assert 'llm_proxy_shared_state_errors_total{operation="rate"} 3.0' in metrics
    log = a.logged()
    assert f"redis at 127.0.0.1:{redis_server.port} unavailable during rate (ConnectionError)" in log
    assert "Traceback" not in log
