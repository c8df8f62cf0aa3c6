"""One Redis pool per process (issue 21): real proxy processes with every Redis feature on (the stream store,
the shared rate buckets, stream slots and token nonces, the cooldowns) open no more connections to a real
redis-server than `resume.redis_connections`, however busy they are. CLIENT LIST names each connection's
process (`llm-sse-proxy:<host>:<pid>`), so the count is each replica's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import redis

from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import BEARER, Replica, replica_config, replicas, wait_healthy
from tests.sse_parse import parse_stream

pytestmark = pytest.mark.anyio
POOL = 10
STREAMS = 24
LONG = {"name": "long", "adapter": "mock", "reply": " ".join(f"w{i}" for i in range(16)), "chunk_chars": 4,
        "chunk_delay_ms": 60}


def connections_of(server: RedisServer, replica: Replica) -> int:
    """The client connections the replica's process holds to the server now."""
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        return sum(1 for c in client.client_list() if c.get("name", "").endswith(f":{replica.process.pid}"))
    finally:
        client.close()


async def chat(client: httpx2.AsyncClient, replica: Replica, on_start: Any = None) -> bytes:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with client.stream("POST", f"{replica.url}/chat", headers=BEARER, json=body) as response:
        assert response.status_code == 200, await response.aread()
        if on_start is not None:
            on_start(response.headers["x-stream-id"])
        return await response.aread()


async def read(client: httpx2.AsyncClient, url: str, headers: dict[str, str] | None = None) -> bytes:
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return await response.aread()


def ends_with_stop(raw: bytes) -> bool:
    events = parse_stream(raw).events
    return bool(events) and json.loads(events[-1].data).get("reason") == "stop"


async def test_a_busy_replica_with_every_redis_feature_stays_within_its_one_pool(
        tmp_path: Path, redis_server: RedisServer) -> None:
    cfg: dict[str, Any] = replica_config(models=[LONG], default_model="long")
    cfg["resume"] = {**cfg["resume"], "store": "redis", "owner_lease": 1.0, "redis_connections": POOL}
    cfg["limits"] = {"streams_per_client": 100, "burst": 100, "requests_per_minute": 6000}
    assert cfg.get("retry", {}).get("cooldown_max", 60) > 0  # cooldowns shared through Redis too
    peaks = {"a": 0, "b": 0}
    with replicas(tmp_path, cfg, {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=20) as client, anyio.create_task_group() as tasks:
            done = anyio.Event()

            async def watch() -> None:
                while not done.is_set():
                    for name, replica in (("a", a), ("b", b)):
                        peaks[name] = max(peaks[name], connections_of(redis_server, replica))
                    await anyio.sleep(0.02)

            tasks.start_soon(watch)
            with anyio.fail_after(90):
                answers = await work(client, a, b)
            done.set()
    assert all(ends_with_stop(raw) for raw in answers), answers
    assert 0 < peaks["a"] <= POOL and 0 < peaks["b"] <= POOL, peaks


async def work(client: httpx2.AsyncClient, a: Replica, b: Replica) -> list[bytes]:
    """Streams on A, two of them read live on B too (XREAD BLOCK), and token-started streams on B (nonces)."""
    answers: list[bytes] = []

    async with anyio.create_task_group() as tasks:

        async def on_b(sid: str) -> None:
            answers.append(await read(client, f"{b.url}/streams/{sid}", BEARER))

        async def one_on_a(i: int) -> None:
            answers.append(await chat(client, a, (lambda sid: tasks.start_soon(on_b, sid)) if i < 2 else None))

        async def one_with_a_token() -> None:
            token = (await client.post(f"{b.url}/token", headers=BEARER)).json()["token"]
            answers.append(await read(client, f"{b.url}/stream?prompt=hi&token={token}"))

        for i in range(STREAMS):
            tasks.start_soon(one_on_a, i)
        for _ in range(4):
            tasks.start_soon(one_with_a_token)
    return answers
