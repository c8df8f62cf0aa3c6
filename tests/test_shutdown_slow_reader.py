"""A stream stuck on a client that stopped reading, when the server stops (issue 16): it still gets its access-log
line and its metrics, and does not hold the process past the server's grace."""

from __future__ import annotations

import asyncio
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

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.doors.response import Shutdown
from tests.conftest import serve
from tests.test_concurrency_and_shutdown import free_port, wait_healthy
from tests.test_disconnect import wait_for_log
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
REQUEST = (b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(BODY), BODY))


def slow_model(up) -> dict:
    # One 8 MiB event after the first chunk: far more than the socket buffers of a client that reads nothing.
    return up.model("gpt", "gpt+big_after=1", max_event_bytes=16 << 20)


def stalled_client(port: int) -> socket.socket:
    """A client that sends its request, reads the status line, then never reads again."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(REQUEST)
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


@pytest.mark.parametrize(("resume", "reason"), [
    (False, "shutdown"),  # the producer is stuck on the client: shutdown ends it
    (True, "stop"),  # the generation writes to the store, not to the client: it finished on its own
])
async def test_at_shutdown_a_stream_stuck_on_a_slow_reader_is_logged_and_counted(caplog, resume: bool, reason: str) -> None:
    caplog.set_level("INFO", logger="llm_sse_proxy")
    shutdown = Shutdown(grace=0.2)
    async with mock_upstream() as up:
        config = upstream_config([slow_model(up)], resume={"enabled": resume})
        async with serve(create_app(config, shutdown=shutdown)) as url:
            sock = await anyio.to_thread.run_sync(stalled_client, int(url.rsplit(":", 1)[1]))
            try:
                await up.recorder.wait_closed(0, timeout=5)  # the upstream has sent it all...
                await anyio.sleep(0.5)  # ...and the proxy has read it: it is stuck on the client (the test's premise)
                shutdown.begin()
                await wait_for_log(caplog, f'"reason":"{reason}"', timeout=10)  # well under send_timeout (30 s)
                async with httpx2.AsyncClient(base_url=url) as client:
                    metrics = (await client.get("/metrics")).text
            finally:
                sock.close()
    assert f'llm_proxy_streams_total{{model="gpt",reason="{reason}"}} 1.0' in metrics
    assert "llm_proxy_active_streams 0.0" in metrics


async def test_sigterm_with_a_stream_stuck_on_a_slow_reader_still_writes_its_access_line(tmp_path: Path) -> None:
    async with mock_upstream() as up:
        port = free_port()
        # Without resumable streams: with them, the generation writes to the store, and is never stuck on a client.
        config = {"server": {"port": port, "shutdown_grace": 0.5}, "default_model": "gpt", "models": [slow_model(up)],
                  "resume": {"enabled": False}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        process = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(tmp_path / "config.yaml")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            await wait_healthy(port)
            sock = await anyio.to_thread.run_sync(stalled_client, port)
            await up.recorder.wait_closed(0, timeout=5)
            await anyio.sleep(0.5)  # the proxy has read the upstream's 8 MiB: it is stuck on the client
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                while process.poll() is None:
                    await asyncio.sleep(0.05)
            sock.close()
        finally:
            process.kill() if process.poll() is None else None
            _, err = process.communicate(timeout=5)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith('{"event":"stream"')]
    assert [line["reason"] for line in lines] == ["shutdown"], err.decode()[-2000:]
    assert b"Exception in ASGI application" not in err
