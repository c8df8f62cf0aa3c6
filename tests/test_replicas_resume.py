"""Resumable streams across two real proxy processes (the CLI) that share one real redis-server:
a stream started on A resumes on B after a cut, and B's reader gets `owner_lost` when A is SIGKILLed."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import BEARER, Replica, replica_config, replicas, wait_healthy
from tests.sse_parse import Event, parse_stream

pytestmark = pytest.mark.anyio
REPLY = " ".join(f"w{i}" for i in range(40))  # 40 chunks of one word, 50 ms apart: about 2 s
LONG = {"name": "long", "adapter": "mock", "reply": REPLY, "chunk_chars": 4, "chunk_delay_ms": 50}


def config(**resume: Any) -> dict[str, Any]:
    cfg = replica_config(models=[LONG], default_model="long")
    cfg["resume"] = {**cfg["resume"], "store": "redis", "owner_lease": 1.0, **resume}
    return cfg


async def read_events(client: httpx2.AsyncClient, method: str, url: str, count: int | None = None,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[httpx2.Response, list[Event]]:
    """Read `count` events (all when None), then drop the connection."""
    raw = b""
    async with client.stream(method, url, headers={**BEARER, **(headers or {})}, **kwargs) as response:
        async for chunk in response.aiter_bytes():
            raw += chunk
            if count is not None and len(parse_stream(raw).events) >= count:
                break
    events = parse_stream(raw).events
    return response, events if count is None else events[:count]


def seqs(events: list[Event]) -> list[int]:
    return [int(event.id.rpartition(":")[2]) for event in events]


def payloads(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in events]


@pytest.mark.parametrize("cut_after", [1, 7])
async def test_a_stream_started_on_one_replica_resumes_on_the_other(tmp_path: Path, redis_server: RedisServer,
                                                                   cut_after: int) -> None:
    with replicas(tmp_path, config(), {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=10) as client:
            with anyio.fail_after(30):
                first, before = await read_events(client, "POST", f"{a.url}/chat", cut_after,
                                                  json={"messages": [{"role": "user", "content": "hi"}]})
                sid = first.headers["x-stream-id"]
                second, after = await read_events(client, "GET", f"{b.url}/streams/{sid}",
                                                  headers={"last-event-id": before[-1].id})
    assert second.status_code == 200 and second.headers["x-stream-id"] == sid
    events = before + after
    assert all(event.id.startswith(f"{sid}:") for event in events)
    assert seqs(events) == list(range(1, len(events) + 1))  # nothing lost, nothing twice
    items = payloads(events)
    assert "".join(p.get("text", "") for p in items) == REPLY
    assert [p for p in items if p.get("action")] == [items[-1]] and items[-1]["reason"] == "stop"


async def test_the_reader_on_b_gets_owner_lost_when_a_is_killed(tmp_path: Path, redis_server: RedisServer) -> None:
    with replicas(tmp_path, config(), {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=10) as client:
            with anyio.fail_after(40):  # lease 1 s + one 0.33 s block; the bound only proves "no hang"
                first, before = await read_events(client, "POST", f"{a.url}/chat", 2,
                                                  json={"messages": [{"role": "user", "content": "hi"}]})
                sid = first.headers["x-stream-id"]
                events = await read_on_b_while_a_dies(client, a, b, sid, before[-1].id)
    assert a.process.returncode == -signal.SIGKILL
    assert seqs(before + events) == list(range(1, len(before) + len(events) + 1))
    items = payloads(events)
    assert [p for p in items if p.get("action")] == [items[-1]]
    assert items[-1]["reason"] == "error" and items[-1]["error"]["type"] == "owner_lost"
    assert "".join(p.get("text", "") for p in payloads(before) + items) != REPLY  # it did end early


async def read_on_b_while_a_dies(client: httpx2.AsyncClient, a: Replica, b: Replica, sid: str,
                                 cursor: str) -> list[Event]:
    raw = b""
    async with client.stream("GET", f"{b.url}/streams/{sid}", headers={**BEARER, "last-event-id": cursor}) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            raw += chunk
            if a.process.poll() is None and len(parse_stream(raw).events) >= 2:
                a.process.kill()
                a.process.wait(5)
    return parse_stream(raw).events


async def test_redis_dying_mid_stream_ends_the_stream_with_a_terminate_and_new_requests_get_503(
        tmp_path: Path, redis_server: RedisServer) -> None:
    with replicas(tmp_path, config(), {"REDIS_URL": redis_server.url}, count=1) as (a,):
        await wait_healthy(a)
        async with httpx2.AsyncClient(timeout=10) as client:
            with anyio.fail_after(40):  # about a second per failed Redis call; the bound proves "no hang"
                raw = b""
                async with client.stream("POST", f"{a.url}/chat", headers=BEARER,
                                         json={"messages": [{"role": "user", "content": "hi"}]}) as response:
                    sid = response.headers["x-stream-id"]
                    async for chunk in response.aiter_bytes():
                        raw += chunk
                        if redis_server.process.poll() is None and len(parse_stream(raw).events) >= 2:
                            redis_server.stop()
                resumed = await client.get(f"{a.url}/streams/{sid}", headers=BEARER)
                new = await client.post(f"{a.url}/chat", headers=BEARER,
                                        json={"messages": [{"role": "user", "content": "hi"}]})
                metrics = (await client.get(f"{a.url}/metrics")).text
    # The stream the outage ended, counted once (the new request was refused by the shared rate limit
    # first, which counts in llm_proxy_shared_state_errors).
    assert 'llm_proxy_resume_store_failures_total{reason="unavailable"} 1.0' in metrics
    items = payloads(parse_stream(raw).events)
    assert [p for p in items if p.get("action")] == [items[-1]]
    assert items[-1]["reason"] == "error" and items[-1]["error"]["type"] == "store_unavailable"
    for refused in (resumed, new):
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "store_unavailable"
    assert "Traceback" not in a.logged()


async def test_a_stop_sent_to_b_stops_the_stream_a_generates(tmp_path: Path, redis_server: RedisServer) -> None:
    # B publishes the stop on A's channel (A wakes at once); A's heartbeat would see the flag within 1 s anyway,
    # so promptness itself is tested in tests/test_redis_store.py with a heartbeat of a minute.
    with replicas(tmp_path, config(), {"REDIS_URL": redis_server.url}) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=10) as client:
            with anyio.fail_after(30):
                raw, stopped = b"", None
                async with client.stream("POST", f"{a.url}/chat", headers=BEARER,
                                         json={"messages": [{"role": "user", "content": "hi"}]}) as response:
                    sid = response.headers["x-stream-id"]
                    async for chunk in response.aiter_bytes():
                        raw += chunk
                        if stopped is None and len(parse_stream(raw).events) >= 2:
                            stopped = await client.post(f"{b.url}/streams/{sid}/stop", headers=BEARER)
    assert stopped is not None and stopped.status_code == 202
    items = payloads(parse_stream(raw).events)
    assert [p for p in items if p.get("action")] == [items[-1]]
    assert (items[-1]["reason"], items[-1]["code"]) == ("cancelled", "stopped")
    assert "Traceback" not in a.logged() + b.logged()
