"""The Dockerfile and compose.yaml, as far as they can be tested with no container runtime here: the image's
entry point and command are the CLI's, its health check answers, and the CLI run as PID 1 of its own PID
namespace (as `docker run` without --init starts it) ends open streams with `shutdown` on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import yaml

from llm_sse_proxy.proxy.server.cli import parse_args
from llm_sse_proxy.proxy.config import load_config
from tests.test_concurrency_and_shutdown import free_port
from tests.test_server_limits import wait_healthy

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def instruction(name: str) -> str:
    """The last stage's `name` instruction, backslash continuations joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return re.findall(rf"^{name} (.+)$", joined, re.MULTILINE)[-1].strip()


def test_the_image_runs_the_cli_as_a_user_with_a_health_check() -> None:
    assert json.loads(instruction("ENTRYPOINT")) == ["llm-sse-proxy"]
    assert 'llm-sse-proxy = "llm_sse_proxy.proxy.server.cli:main"' in (ROOT / "pyproject.toml").read_text()
    args = parse_args(json.loads(instruction("CMD")))
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    assert instruction("USER") not in ("root", "0") and instruction("STOPSIGNAL") == "SIGTERM"
    assert "http://127.0.0.1:8080/healthz" in instruction("HEALTHCHECK")
    for package in ("proxy", "adapters", "mock_upstream"):
        assert f"COPY {package} {package}" in DOCKERFILE


def test_compose_runs_replicas_on_redis_with_the_config_it_mounts() -> None:
    proxy = COMPOSE["services"]["proxy"]
    args = parse_args(proxy["command"])
    [mount] = proxy["volumes"]
    source, target, _ = mount.split(":")
    assert target == args.config and proxy["deploy"]["replicas"] > 1 and proxy["init"] is True
    environ = {"REDIS_URL": proxy["environment"]["REDIS_URL"], "PROXY_KEYS": "k" * 16, "PROXY_TOKEN_SECRET": "s" * 32}
    config = load_config(ROOT / source, environ=environ)
    assert config.resume.store == "redis" and config.auth.key_hashes and config.auth.token_secret is not None
    assert environ["REDIS_URL"].startswith("redis://redis:") and "redis" in COMPOSE["services"]


def test_as_pid_1_sigterm_ends_open_streams_with_shutdown_and_the_health_check_answers(tmp_path: Path) -> None:
    port = free_port()
    slow = {"server": {"shutdown_grace": 0.3}, "default_model": "mock",
            "models": [{"name": "mock", "adapter": "mock", "chunk_delay_ms": 200}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(slow))  # where the image's WORKDIR takes it from
    command = [str(Path(sys.executable).parent / "llm-sse-proxy"), *json.loads(instruction("CMD"))]
    command[command.index("0.0.0.0")], command[command.index("8080")] = "127.0.0.1", str(port)
    # A PID namespace of its own (in a user namespace, so no privilege is needed): the CLI is its PID 1,
    # which the kernel sends no signal it has not installed a handler for.
    process = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", *command],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, process)
        assert pid_in_namespace(child_of(process.pid)) == 1
        health = instruction("HEALTHCHECK").split("CMD ", 1)[1].replace("8080", str(port))
        assert subprocess.run(json.loads(health), timeout=30).returncode == 0
        events = stream_through_sigterm(port, child_of(process.pid))
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    assert events[-1] == {"action": "terminate", "reason": "shutdown"} and len(events) > 1
    assert code in (0, 128 + signal.SIGTERM)


def child_of(pid: int) -> int:
    deadline = time.monotonic() + 10
    while not (children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
        assert time.monotonic() < deadline, "unshare started no child"
        time.sleep(0.05)
    return int(children[0])


def pid_in_namespace(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^NSpid:\s+\d+\s+(\d+)", status, re.MULTILINE)[1])  # type: ignore[index]


def stream_through_sigterm(port: int, pid: int) -> list[dict]:
    raw = b""
    with httpx2.stream("POST", f"http://127.0.0.1:{port}/chat", json={"messages": [{"role": "user", "content": "hi"}]},
                       timeout=10) as response:
        for chunk in response.iter_bytes():
            if not raw:
                os.kill(pid, signal.SIGTERM)
            raw += chunk
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
