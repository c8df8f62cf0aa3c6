"""Proxy replicas as real processes: the real CLI, each on its own free port, sharing one config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import yaml

from tests.redis_fixtures import free_port

KEY = "replica-test-key-0123456789abcdef"
TOKEN_SECRET = "replica-test-token-secret-0123456789abcdef"  # the same on every replica, so tokens travel
ENV = {"PROXY_KEYS": KEY, "PROXY_TOKEN_SECRET": TOKEN_SECRET}
BEARER = {"authorization": f"Bearer {KEY}"}
SLOW_MODEL = {"name": "slow", "adapter": "mock", "reply": "one two three four five six", "chunk_chars": 4,
              "chunk_delay_ms": 150}


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


def replica_config(redis_url_var: str = "REDIS_URL", **top: Any) -> dict[str, Any]:
    """Keys on, one signing secret, the slow mock model, and `resume.redis_url` from the environment."""
    return {
        "server": {"shutdown_grace": 0.5},
        "auth": {"keys": ["${PROXY_KEYS}"], "token_secret": "${PROXY_TOKEN_SECRET}"},
        "resume": {"redis_url": f"${{{redis_url_var}}}"},
        "default_model": "slow",
        "models": [SLOW_MODEL],
        **top,
    }


@contextmanager
def replicas(tmp_path: Path, config: dict[str, Any], env: dict[str, str], count: int = 2) -> Iterator[list[Replica]]:
    """Start `count` proxy processes on one config file; stop them (SIGTERM, then SIGKILL) afterwards."""
    path = tmp_path / "replicas.yaml"
    path.write_text(yaml.safe_dump(config))
    with ExitStack() as stack:
        started = []
        for i in range(count):
            replica = _start(tmp_path, path, f"r{i}", {**ENV, **env})
            stack.callback(replica.stop)
            started.append(replica)
        yield started


def _start(tmp_path: Path, config: Path, name: str, env: dict[str, str]) -> Replica:
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the replica's logging
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(config), "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )
    return Replica(name, port, process, log)


async def wait_healthy(*replicas: Replica) -> None:
    async with httpx2.AsyncClient(timeout=1) as client:
        for replica in replicas:
            with anyio.fail_after(20):
                while True:
                    assert replica.process.poll() is None, replica.logged()
                    try:
                        if (await client.get(f"{replica.url}/healthz")).status_code == 200:
                            break
                    except httpx2.TransportError:
                        await anyio.sleep(0.05)
