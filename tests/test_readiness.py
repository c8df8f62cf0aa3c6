"""`GET /readyz` (issue 25): 503 naming what is not ready, for a Redis that stopped, a full memory store and
a server that is stopping; 200 again once it can serve. `/healthz` stays 200 throughout (liveness)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.doors.response import Shutdown
from tests.conftest import chat_body, make_config, proxy, serve
from tests.docs_blocks import block
from tests.redis_fixtures import RedisServer, _start, _wait_ready
from tests.test_concurrency_and_shutdown import free_port, wait_healthy
from tests.upstream_fixtures import Upstream, mock_upstream

pytestmark = pytest.mark.anyio


async def readyz(client: httpx2.AsyncClient) -> tuple[int, dict]:
    response = await client.get("/readyz")
    return response.status_code, response.json()


async def until_status(client: httpx2.AsyncClient, status: int) -> dict:
    """Poll /readyz until it answers `status` (bounded)."""
    with anyio.fail_after(20):
        while True:
            code, body = await readyz(client)
            if code == status:
                return body
            await anyio.sleep(0.05)


async def test_ready_by_default_and_healthz_stays_liveness() -> None:
    async with proxy(make_config()) as client:
        assert await readyz(client) == (200, {"status": "ready", "checks": {"draining": "ok", "limits": "ok",
                                                                             "store": "ok"}})
        assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_redis_stopped_then_started_again(tmp_path: Path) -> None:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    redis = RedisServer(port, _start(binary, tmp_path, port))
    try:
        assert _wait_ready(redis)
        config = make_config(resume={"store": "redis", "redis_url": redis.url})
        async with proxy(config) as client:
            assert (await readyz(client))[0] == 200
            redis.stop()
            body = await until_status(client, 503)
            assert body["status"] == "not_ready" and body["checks"]["draining"] == "ok"
            for check in ("limits", "store"):  # both talk to that Redis, each through its own client
                assert body["checks"][check].startswith(f"redis at 127.0.0.1:{port} does not answer"), body
            assert "redis://" not in json.dumps(body)
            documented = json.loads(block("readyz-body"))  # docs/operations.md's example has this very shape
            assert set(documented) == set(body) and set(documented["checks"]) == set(body["checks"])
            assert re.sub(r"\d+", "#", json.dumps(documented["checks"])) == re.sub(r"\d+", "#", json.dumps(body["checks"]))
            assert (await client.get("/healthz")).status_code == 200
            redis = RedisServer(port, _start(binary, tmp_path, port))
            assert _wait_ready(redis)
            body = await until_status(client, 200)
            assert body["checks"] == {"draining": "ok", "limits": "ok", "store": "ok"}
    finally:
        redis.stop()


async def test_a_full_memory_store_is_not_ready_until_a_stream_finishes() -> None:
    # A budget of 1 KiB, and an answer of a few KiB at 20 ms a chunk: the store is full while it runs.
    model = {"name": "mock", "adapter": "mock", "chunk_delay_ms": 20, "reply": "word " * 400}
    config = make_config([model], resume={"memory_budget": 1024})
    async with proxy(config) as client:
        async with client.stream("POST", "/chat", json=chat_body()) as response:
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > 2048:
                    break
            code, body = await readyz(client)
            assert code == 503 and body["checks"]["store"] == "the resumable-stream memory budget is full"
            refused = await client.post("/chat", json=chat_body())
            assert refused.status_code == 503  # what readiness predicted
        # The stream goes on without its reader until it finishes; a finished stream can make room.
        body = await until_status(client, 200)
        assert body["checks"]["store"] == "ok"


async def test_not_ready_as_soon_as_the_shutdown_begins() -> None:
    shutdown = Shutdown(grace=5)
    async with serve(create_app(make_config(), shutdown=shutdown)) as url:
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            assert (await readyz(client))[0] == 200
            shutdown.begin()  # what SIGTERM does on the loop, before uvicorn stops listening
            code, body = await readyz(client)
            assert code == 503 and body["checks"]["draining"] == "the server is stopping"
            assert (await client.get("/healthz")).status_code == 200


async def test_sigterm_with_a_drain_delay_says_503_while_streams_still_flow(tmp_path: Path) -> None:
    async with mock_upstream() as up:
        process, port = start_draining_proxy(tmp_path, up)
        try:
            await wait_healthy(port)
            log = await drain_while_streaming(port, process)
        finally:
            process.kill() if process.poll() is None else None
            process.communicate(timeout=10)
    # In order: ready; SIGTERM; 503 draining while the open stream goes on and a new one is served;
    # then the open stream ends with its shutdown terminate.
    assert log[:2] == [("readyz", 200), ("sigterm",)]
    assert log[2:4] == [("readyz", 503, "the server is stopping"), ("new stream", 200)]
    assert log[-1] == ("terminate", "shutdown")


def start_draining_proxy(tmp_path: Path, up: Upstream) -> tuple[subprocess.Popen[bytes], int]:
    """The real CLI with `server.drain_delay`, and a model slow enough to outlast the delay and the grace."""
    port = free_port()
    config = {
        "server": {"port": port, "shutdown_grace": 0.5, "drain_delay": 3},
        "default_model": "gpt",
        "models": [up.model("gpt", "gpt+delay_ms=500")],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return process, port


async def drain_while_streaming(port: int, process: subprocess.Popen[bytes]) -> list[tuple]:
    log: list[tuple] = []
    base = f"http://127.0.0.1:{port}"
    async with httpx2.AsyncClient(base_url=base, timeout=10) as client, \
            httpx2.AsyncClient(base_url=base, timeout=10) as other:
        log.append(("readyz", (await other.get("/readyz")).status_code))
        async with client.stream("POST", "/chat", json=chat_body()) as response:
            raw = b""
            async for chunk in response.aiter_bytes():
                if not raw:
                    process.send_signal(signal.SIGTERM)
                    log.append(("sigterm",))
                    body = (await other.get("/readyz")).json()
                    log.append(("readyz", 503 if body["status"] == "not_ready" else 200, body["checks"]["draining"]))
                    fresh = await other.post("/chat", json=chat_body(), headers={"connection": "close"})
                    log.append(("new stream", fresh.status_code))
                raw += chunk
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    log.append(("terminate", events[-1]["reason"]))
    with anyio.fail_after(15):
        while process.poll() is None:
            await anyio.sleep(0.05)
    return log
