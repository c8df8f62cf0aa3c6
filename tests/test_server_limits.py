"""The limits below the app, through the real CLI in its own process: what a connection may cost
before it is a request (head size and lines, head and body timeouts, open connections), the
keep-alive timeout, and which X-Forwarded-For is believed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.test_concurrency_and_shutdown import free_port

MiB = 1024 * 1024
HANG = 10  # seconds: far above every timeout configured here, so only a missing limit reaches it


@dataclass
class Running:
    port: int
    process: subprocess.Popen[str]
    stderr: list[str] = field(default_factory=list)  # filled when the process has exited


@contextmanager
def proxy_process(tmp_path: Path, server: dict[str, Any] | None = None, *, prefix: tuple[str, ...] = (),
                  log_level: str = "warning", **top: Any) -> Iterator[Running]:
    """`llm-sse-proxy` on a free port with the mock model; its stderr lines are there once it exits.
    `prefix` runs it under another command that then executes it (`prlimit`)."""
    port = free_port()
    models = top.pop("models", [{"name": "mock", "adapter": "mock", "chunk_delay_ms": 0}])
    config = {"server": {"port": port, "debug_endpoints": True, **(server or {})}, "default_model": "mock",
              "models": models, **top}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [*prefix, sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path), "--log-level", log_level]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    running = Running(port, process)
    try:
        wait_healthy(port, process)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            running.stderr += process.communicate(timeout=10)[1].splitlines()
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def wait_healthy(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise AssertionError("the proxy did not start")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=HANG)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a socket.timeout (after HANG s) means it never did."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # closed with our unread data in its buffer: what it wrote first may still have arrived
    return received


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def rss(port: int) -> int:
    return httpx2.get(f"http://127.0.0.1:{port}/debug/runtime", timeout=5).json()["rss_bytes"]


def send_until_refused(sock: socket.socket, chunks: Iterator[bytes]) -> int:
    """Send until the server stops taking data; return the bytes it took."""
    sent = 0
    try:
        for chunk in chunks:
            sock.sendall(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return sent


def small_headers(total: int) -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nhost: x\r\n"
    block = b"a: b\r\n" * 10_000
    for _ in range(total // len(block)):
        yield block


def one_endless_header(total: int) -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: "
    for _ in range(total // 65536):
        yield b"y" * 65536


def endless_url(total: int) -> Iterator[bytes]:
    yield b"GET /stream?prompt="
    for _ in range(total // 65536):
        yield b"y" * 65536


@pytest.mark.parametrize("attack", [small_headers, one_endless_header, endless_url])
def test_a_16_mib_request_head_gets_431_and_the_memory_stays_flat(tmp_path: Path, attack: Any) -> None:
    with proxy_process(tmp_path) as running:
        port = running.port
        before = rss(port)
        with connect(port) as sock:
            sent = send_until_refused(sock, attack(16 * MiB))
            answer = read_until_closed(sock)
        grown = rss(port) - before
        assert httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    over = "the request line and headers are over 65536 bytes or 100 lines"
    if attack is endless_url:  # a GET /stream's prompt: the answer says where a long one goes
        over = f"the prompt is too long for GET /stream ({over}); send it in the body of POST /chat"
    assert status_and_error(answer) == (431, {"type": "headers_too_large", "message": over})
    assert sent < 16 * MiB  # it stopped reading; without the cap it took it all (and grew ~320 MiB on small headers)
    assert grown < 16 * MiB


def test_a_head_at_the_limit_is_served(tmp_path: Path) -> None:
    headers = {f"x-h{i}": "v" * 100 for i in range(90)}  # 90 lines and ~10 KiB: under both caps
    with proxy_process(tmp_path) as running:
        port = running.port
        response = httpx2.get(f"http://127.0.0.1:{port}/healthz", headers=headers, timeout=5)
    assert response.status_code == 200


def test_requests_on_one_keep_alive_connection_each_get_the_whole_head_budget(tmp_path: Path) -> None:
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 500) for i in range(90))
    with proxy_process(tmp_path) as running:
        with connect(running.port) as sock:
            answers = []
            for _ in range(3):  # ~46 KiB each: over the cap together, under it one by one
                sock.sendall(head + b"\r\n")
                answers.append(read_response(sock))
    assert [answer.split(b" ", 2)[1] for answer in answers] == [b"200"] * 3


def read_response(sock: socket.socket) -> bytes:
    received = b""
    while not received.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return received


def test_a_request_that_is_not_http_gets_a_json_400(tmp_path: Path) -> None:
    with proxy_process(tmp_path) as running:
        with connect(running.port) as sock:
            sock.sendall(b"HELLO THERE\r\n\r\n")
            answer = read_until_closed(sock)
    assert status_and_error(answer) == (400, {"type": "invalid_request",
                                              "message": "the request is not valid HTTP/1.1"})


def test_a_connection_that_sends_nothing_is_closed_after_head_timeout(tmp_path: Path) -> None:
    with proxy_process(tmp_path, {"head_timeout": 0.5}) as running:
        port = running.port
        with connect(port) as sock:
            assert read_until_closed(sock) == b""  # closed without an answer: a preconnect expects none


def test_half_a_request_head_gets_408_after_head_timeout(tmp_path: Path) -> None:
    with proxy_process(tmp_path, {"head_timeout": 0.5}) as running:
        port = running.port
        with connect(port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            answer = read_until_closed(sock)
    assert status_and_error(answer) == (408, {"type": "request_timeout",
                                              "message": "the request head did not arrive within 0.5 s"})


def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_head_timeout(tmp_path: Path) -> None:
    # The timeout is for the whole head, not for silence: a trickle does not keep the connection.
    with proxy_process(tmp_path, {"head_timeout": 0.5}) as running:
        port = running.port
        with connect(port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            sent = send_until_refused(sock, trickle(b"x-slow: " + b"y" * 200, interval=0.05))
            answer = read_until_closed(sock)
    assert sent < 100
    assert status_and_error(answer)[0] == 408


def trickle(data: bytes, interval: float) -> Iterator[bytes]:
    for byte in data:
        time.sleep(interval)
        yield bytes([byte])


def test_a_body_that_stalls_gets_408_after_body_timeout_and_no_traceback(tmp_path: Path) -> None:
    with proxy_process(tmp_path, {"body_timeout": 0.5}) as running:
        port = running.port
        with connect(port) as sock:
            sock.sendall(b"POST /chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 100\r\n\r\n{\"messages\": ")
            answer = read_until_closed(sock)
    assert status_and_error(answer) == (408, {"type": "request_timeout",
                                              "message": "the request body did not arrive within 0.5 s"})
    assert not [line for line in running.stderr if "Traceback" in line or "ERROR" in line], running.stderr


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(tmp_path: Path) -> None:
    with proxy_process(tmp_path, {"keep_alive_timeout": 0.5}) as running:
        port = running.port
        with connect(port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            sock.settimeout(4)  # uvicorn's own default would keep it 5 s
            answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}')


def test_connections_over_max_connections_get_503_at_once_and_the_proxy_recovers(tmp_path: Path) -> None:
    with proxy_process(tmp_path, {"max_connections": 5, "head_timeout": 60}) as running:
        port = running.port
        idle = [connect(port) for _ in range(4)]
        # The server accepts in order: once a request on a fifth connection is answered, all five are counted.
        fifth = connect(port)
        fifth.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert fifth.recv(65536).startswith(b"HTTP/1.1 200 ")
        with connect(port) as refused:
            answer = read_until_closed(refused)
        for sock in [*idle, fifth]:
            sock.close()
        recovered = retry_healthz(port)
    assert status_and_error(answer) == (503, {"type": "overloaded", "message": (
        "the proxy has too many open connections; try again shortly")})
    assert b"\r\nretry-after: 1\r\n" in answer
    assert recovered == 200


def retry_healthz(port: int) -> int:
    """Connections closed by the client leave the server's count a moment later."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            status = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
        except httpx2.TransportError:  # refused while the count drops: closed before the answer was read
            status = 0
        if status == 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@pytest.mark.parametrize(("server", "statuses"), [
    ({}, [200, 200, 429]),  # by default the header is not believed: one client, over its burst of 2
    ({"forwarded_allow_ips": ["127.0.0.1"]}, [200, 200, 200]),  # behind a proxy that sets it: three clients
])
def test_x_forwarded_for_is_believed_only_from_the_configured_proxies(
    tmp_path: Path, server: dict[str, Any], statuses: list[int]
) -> None:
    with proxy_process(tmp_path, server, limits={"burst": 2, "requests_per_minute": 1}) as running:
        port = running.port
        got = [httpx2.post(f"http://127.0.0.1:{port}/token", headers={"x-forwarded-for": f"203.0.113.{i}"},
                           timeout=5).status_code for i in range(3)]
    assert got == statuses


@pytest.mark.parametrize(("hard", "soft_after", "warned"), [(4096, 300 + 100 + 64, False), (128, 128, True)])
def test_the_open_file_limit_is_raised_to_fit_the_connection_cap_or_the_proxy_warns(
    tmp_path: Path, hard: int, soft_after: int, warned: bool
) -> None:
    # Each stream holds two descriptors, its client and its upstream: 300 connections + 100 streams + spares.
    limit = ("prlimit", f"--nofile=128:{hard}")
    with proxy_process(tmp_path, {"max_connections": 300}, prefix=limit, limits={"max_streams": 100}) as running:
        soft = open_file_limit(running.process.pid)
    assert soft == soft_after
    warning = "the open-file limit (128) is below server.max_connections + limits.max_streams + 64 (464)"
    assert any(warning in line for line in running.stderr) == warned, running.stderr


def open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")
