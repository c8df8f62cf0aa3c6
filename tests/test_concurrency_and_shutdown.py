"""Many streams at once through one proxy; and SIGTERM ends open streams with a terminate."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml

from llm_sse_proxy.proxy.doors.response import Shutdown
from tests.conftest import LOAD_TEST_LIMITS, assert_one_terminate_last, chat_body, payloads, proxy, read_stream
from tests.upstream_fixtures import API_KEY, mock_upstream, upstream_config

pytestmark = pytest.mark.anyio


async def test_200_concurrent_streams_arrive_intact_and_in_order() -> None:
    texts = {i: f"stream {i}: " + "".join(f"<{i}.{n}>" for n in range(30)) for i in range(200)}
    results: dict[int, tuple[str, dict]] = {}
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")], limits=LOAD_TEST_LIMITS)) as client:

        async def one(i: int) -> None:
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("echo:" + texts[i]))
            items = payloads(parsed)
            results[i] = ("".join(p["text"] for p in items[:-1]), assert_one_terminate_last(items))

        with anyio.fail_after(50):
            async with anyio.create_task_group() as tasks:
                for i in texts:
                    tasks.start_soon(one, i)
    assert len(results) == 200
    for i, (text, terminate) in results.items():
        assert text == texts[i] and terminate["reason"] == "stop"
    assert up.recorder.count() == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_sigterm_ends_open_streams_with_a_shutdown_terminate(tmp_path: Path) -> None:
    async with mock_upstream() as up:
        process, port = start_proxy(tmp_path, up)
        try:
            await wait_healthy(port)
            events, code = await stream_through_sigterm(port, process)
        finally:
            process.kill() if process.poll() is None else None
            out, err = process.communicate(timeout=5)
        await up.recorder.wait_closed(0, timeout=2)
    assert events[-1] == {"action": "terminate", "reason": "shutdown"}
    assert [e for e in events if e.get("action")] == [events[-1]]
    assert len(events) > 1
    # uvicorn re-raises the signal it caught once it has shut down, the convention process managers expect.
    assert code in (0, -signal.SIGTERM), err
    assert API_KEY.encode() not in out + err


async def test_two_workers_serve_and_end_their_streams_on_sigterm(tmp_path: Path) -> None:
    async with mock_upstream() as up:
        process, port = start_proxy(tmp_path, up, "--workers", "2")
        try:
            await wait_healthy(port)
            async with httpx2.AsyncClient(timeout=10) as client:
                statuses = {(await client.get(f"http://127.0.0.1:{port}/healthz")).status_code for _ in range(4)}
            events, code = await stream_through_sigterm(port, process)
        finally:
            process.kill() if process.poll() is None else None
            out, err = process.communicate(timeout=10)
    assert statuses == {200}
    assert events[-1] == {"action": "terminate", "reason": "shutdown"} and len(events) > 1
    assert code == 0, err


def start_proxy(tmp_path: Path, up, *args: str) -> tuple[subprocess.Popen, int]:
    """The real CLI in its own process, on a free port, with a slow model behind the mock upstream."""
    port = free_port()
    config = {
        "server": {"port": port, "shutdown_grace": 0.5},
        "default_model": "gpt",
        "models": [up.model("gpt", "gpt+delay_ms=200")],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path), "--log-level", "warning", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    return process, port


async def stream_through_sigterm(port: int, process: subprocess.Popen) -> tuple[list[dict], int | None]:
    raw = b""
    async with httpx2.AsyncClient(timeout=10) as client:
        async with client.stream("POST", f"http://127.0.0.1:{port}/chat", json=chat_body()) as response:
            async for chunk in response.aiter_bytes():
                if not raw:
                    process.send_signal(signal.SIGTERM)
                raw += chunk
    with anyio.fail_after(8):
        while process.poll() is None:
            await anyio.sleep(0.05)
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    return events, process.returncode


async def wait_healthy(port: int) -> None:
    async with httpx2.AsyncClient(timeout=1) as client:
        with anyio.fail_after(15):
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        return
                except httpx2.TransportError:
                    await anyio.sleep(0.05)


async def test_the_upstream_pool_does_not_queue_streams() -> None:
    # httpx's default pool holds 100 connections: stream 101 would wait for one and, with a short pool
    # timeout, fail. All 150 are open upstream at the same time here.
    timeouts = {"connect": 0.5, "first_token": 10, "idle": 10, "total": 30}
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+first_delay_ms=1500")], timeouts=timeouts, limits=LOAD_TEST_LIMITS)
        async with proxy(config) as client:
            reasons: list[str] = []

            async def one() -> None:
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
                reasons.append(assert_one_terminate_last(payloads(parsed))["reason"])

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tasks:
                    for _ in range(150):
                        tasks.start_soon(one)
    assert reasons == ["stop"] * 150


async def test_shutdown_ends_each_stream_at_one_deadline_even_streams_that_start_late() -> None:
    shutdown = Shutdown(grace=1.0)
    ended: dict[str, float] = {}
    clock = anyio.current_time

    async def stream(name: str) -> None:
        with anyio.CancelScope() as producer, shutdown.ending(producer):
            await anyio.sleep(10)
        ended[name] = clock()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stream, "open before")
            await anyio.sleep(0.05)
            began = clock()
            shutdown.begin()
            await anyio.sleep(0.5)
            shutdown.begin()  # a second signal does not move the deadline
            tasks.start_soon(stream, "during grace")
            await anyio.sleep(0.7)
            late = clock()
            tasks.start_soon(stream, "after the deadline")
    # The grace is one deadline, 1 s after the first signal: a stream that joins half-way gets what is
    # left (ends near 1.0 s), not a grace of its own (1.5 s); one that joins after it ends at once.
    assert 1.0 <= ended["open before"] - began < 1.4
    assert 1.0 <= ended["during grace"] - began < 1.4
    assert ended["after the deadline"] - late < 0.4
