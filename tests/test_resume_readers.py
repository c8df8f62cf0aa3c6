"""What readers of a resumable stream may take (issue 26 item 2): a reader that comes back holds one of its
client's stream slots and one of its stream's reader places; and on a replica that does not generate the
stream, any number of readers cost one blocking Redis connection, not one each, so another key's read
on that replica still works."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import redis

from tests.conftest import chat_body, proxy
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import KEY, Replica, replica_config, replicas, wait_healthy
from tests.sse_parse import parse_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio
HANG = 30


async def hold(stack: AsyncExitStack, client: httpx2.AsyncClient, method: str, url: str,
               **kwargs: Any) -> httpx2.Response:
    """Open a stream and keep it open (until the stack closes) once its first bytes came."""
    response = await stack.enter_async_context(client.stream(method, url, **kwargs))
    if response.status_code == 200:
        chunks = response.aiter_bytes()  # kept: a dropped iterator is closed, and the stream with it
        stack.push_async_callback(chunks.aclose)
        await chunks.__anext__()
    else:
        await response.aread()
    return response


def slow(up: Any, **top: Any) -> Any:
    return upstream_config([up.model("gpt", "gpt+delay_ms=200")], resume={"enabled": True, **top.pop("resume", {})},
                           **top)


async def test_a_reader_that_comes_back_holds_one_of_its_clients_stream_slots() -> None:
    async with mock_upstream() as up, proxy(slow(up, limits={"streams_per_client": 3})) as client:
        with anyio.fail_after(HANG):
            async with AsyncExitStack() as stack:
                first = await hold(stack, client, "POST", "/chat", json=chat_body())  # the generation's slot
                sid = first.headers["x-stream-id"]
                readers = [await hold(stack, client, "GET", f"/streams/{sid}") for _ in range(2)]
                refused = await client.get(f"/streams/{sid}")
                another = await client.post("/chat", json=chat_body())
            async with AsyncExitStack() as stack:  # the readers left: their slots are free again
                again = await hold(stack, client, "GET", f"/streams/{sid}")
    assert first.status_code == 200 and [r.status_code for r in readers] == [200, 200]
    for response in (refused, another):
        assert response.status_code == 429 and response.json()["error"]["type"] == "too_many_streams"
    assert again.status_code in (200, 204)


async def test_a_stream_takes_a_bounded_number_of_readers_in_a_process() -> None:
    async with mock_upstream() as up, proxy(slow(up, resume={"max_readers_per_stream": 2})) as client:
        with anyio.fail_after(HANG):
            async with AsyncExitStack() as stack:
                first = await hold(stack, client, "POST", "/chat", json=chat_body())  # reader 1 of 2
                sid = first.headers["x-stream-id"]
                second = await hold(stack, client, "GET", f"/streams/{sid}")
                refused = await client.get(f"/streams/{sid}")
    assert (first.status_code, second.status_code) == (200, 200)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_readers"
    assert refused.headers["retry-after"] == "1"


OTHER_KEY = "another-replica-test-key-0123456789"
POOL = 6
READERS = 30
LONG = {"name": "long", "adapter": "mock", "reply": " ".join(f"w{i}" for i in range(30)), "chunk_chars": 4,
        "chunk_delay_ms": 100}


def ends_with_stop(raw: bytes) -> bool:
    events = parse_stream(raw).events
    return bool(events) and json.loads(events[-1].data).get("reason") == "stop"


async def read_all(client: httpx2.AsyncClient, url: str, key: str) -> bytes:
    async with client.stream("GET", url, headers={"authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200, await response.aread()
        return await response.aread()


def blocked_clients(server: RedisServer) -> int:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        return int(client.info("clients")["blocked_clients"])
    finally:
        client.close()


async def test_many_readers_on_a_replica_that_does_not_own_the_stream_leave_room_for_another_key(
        tmp_path: Path, redis_server: RedisServer) -> None:
    cfg: dict[str, Any] = replica_config(models=[LONG], default_model="long")
    cfg["resume"] = {**cfg["resume"], "store": "redis", "owner_lease": 1.0, "redis_connections": POOL,
                     "max_readers_per_stream": READERS}
    cfg["limits"] = {"streams_per_client": READERS + 1, "burst": 100, "requests_per_minute": 6000}
    env = {"REDIS_URL": redis_server.url, "PROXY_KEYS": f"{KEY},{OTHER_KEY}"}
    blocked = 0
    with replicas(tmp_path, cfg, env) as (a, b):
        await wait_healthy(a, b)
        async with httpx2.AsyncClient(timeout=HANG) as client, anyio.create_task_group() as tasks:
            with anyio.fail_after(90):
                sid = await start(client, a, KEY)
                answers: list[bytes] = []

                async def reader(key: str, stream: str) -> None:
                    answers.append(await read_all(client, f"{b.url}/streams/{stream}", key))

                for _ in range(READERS):
                    tasks.start_soon(reader, KEY, sid)
                await anyio.sleep(1.0)  # the readers wait on B for A's next words
                blocked = blocked_clients(redis_server)
                other = await start(client, a, OTHER_KEY)
                other_answer = await read_all(client, f"{b.url}/streams/{other}", OTHER_KEY)
    assert ends_with_stop(other_answer)
    assert len(answers) == READERS and all(ends_with_stop(raw) for raw in answers)
    assert blocked <= 1  # B's one reader loop (A generates, so it blocks on nothing)


async def start(client: httpx2.AsyncClient, replica: Replica, key: str) -> str:
    """Start a stream on `replica`, read its first event, and leave it running (the reader goes)."""
    async with client.stream("POST", f"{replica.url}/chat", json=chat_body(),
                             headers={"authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200, await response.aread()
        chunks = response.aiter_bytes()
        await chunks.__anext__()
        await chunks.aclose()
        return response.headers["x-stream-id"]
