"""The command line as a new user meets it: bad values, a taken port, --version, Ctrl-C once and twice."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx2
import pytest

from llm_sse_proxy.proxy.server.cli import main
from tests.test_server_limits import proxy_process


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "80a"])
def test_a_port_out_of_range_is_refused_like_the_configs(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--port", port])
    assert exited.value.code == 2
    assert "argument --port: must be a whole number from 0 to 65535" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"llm-sse-proxy {version('llm-sse-proxy')}\n"


def test_a_taken_port_fails_in_one_line_before_start_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "llm_sse_proxy.proxy", "--port", str(port)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == (f"llm-sse-proxy: cannot listen on 127.0.0.1:{port}: the port is in use "
                           "(another proxy?); choose another with --port\n")


def test_ctrl_c_stops_without_a_traceback(tmp_path: Path) -> None:
    with proxy_process(tmp_path) as running:
        running.process.send_signal(signal.SIGINT)
        code = running.process.wait(timeout=10)
    assert code == 130
    assert not [line for line in running.stderr if "Traceback" in line or "KeyboardInterrupt" in line], running.stderr


def test_a_second_ctrl_c_ends_streams_at_once_with_a_shutdown_terminate(tmp_path: Path) -> None:
    # A grace far longer than the test: only the second Ctrl-C can end the stream in time.
    slow = [{"name": "mock", "adapter": "mock", "chunk_delay_ms": 300}]
    with proxy_process(tmp_path, {"shutdown_grace": 60}, models=slow) as running:
        events = stream_through_two_ctrl_cs(running.port, running.process)
        code = running.process.wait(timeout=10)
    assert events[-1] == {"action": "terminate", "reason": "shutdown"} and len(events) > 1
    assert code == 130
    access = [json.loads(line) for line in running.stderr if line.startswith('{"event":"stream"')]
    assert [(line["reason"], line["client_disconnect"]) for line in access] == [("shutdown", False)]
    # Issue 26: uvicorn skipped the app's shutdown on the forced exit and logged its cancelled lifespan.
    noise = ("Traceback", "KeyboardInterrupt", "CancelledError")
    assert not [line for line in running.stderr if line.startswith(noise) or "Error" in line], running.stderr


def stream_through_two_ctrl_cs(port: int, process: subprocess.Popen[str]) -> list[dict]:
    raw = b""
    with httpx2.stream("POST", f"http://127.0.0.1:{port}/chat", json={"messages": [{"role": "user", "content": "hi"}]},
                       timeout=10) as response:
        for chunk in response.iter_bytes():
            if not raw:
                process.send_signal(signal.SIGINT)
                time.sleep(0.3)  # the first is seen before the second (signals do not queue)
                process.send_signal(signal.SIGINT)
            raw += chunk
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
