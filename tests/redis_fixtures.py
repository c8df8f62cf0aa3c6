"""A real redis-server for tests: Debian's binary on a free loopback port, no persistence, in a temp dir."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_sse_proxy.proxy.state.redis import MAX_CONNECTIONS, SharedRedis
from llm_sse_proxy.proxy.state.streams.redis_store import RedisStore, RedisStoreLimits

START_TIMEOUT = 10.0  # seconds; it starts in about 30 ms when the machine is idle
ATTEMPTS = 5  # another process may take the free port between our probe and redis-server's bind


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command over a plain socket (no client library), answered within a few seconds."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(_resp(args))
            return _read_reply(sock)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a hung Redis)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def run_redis_server(directory: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    assert Path(binary).exists(), "Debian's redis-server is needed: apt-get install redis-server (.ci/run does it)"
    for _ in range(ATTEMPTS):
        port = free_port()
        server = RedisServer(port, _start(binary, directory, port))
        try:
            if _wait_ready(server):
                break
        except BaseException:
            server.stop()
            raise
        server.stop()
    else:
        raise RuntimeError(f"redis-server did not start in {ATTEMPTS} attempts")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test, stopped after it."""
    with run_redis_server(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for a module's tests (each uses fresh random stream ids), stopped after them."""
    with run_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _start(binary: str, directory: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--save", "", "--appendonly", "no", "--maxmemory", "64mb", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", str(directory / "redis.log")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ready(server: RedisServer) -> bool:
    """True once it answers PING; False if it exited (its port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if server.command("PING") == b"+PONG":
                return True
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _resp(args: tuple[str, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(sock: socket.socket) -> bytes:
    """The first line of the reply (enough for PING, DBSIZE, INFO's status), without its CRLF."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        data += chunk
    return data.split(b"\r\n", 1)[0]


class ReplicaStore(RedisStore):
    """A RedisStore on a Redis client of its own, as each replica has one; closing the store closes it."""

    def __init__(self, url: str, limits: RedisStoreLimits = RedisStoreLimits(), *, replica: str = "",
                 max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(SharedRedis(url, max_connections=max_connections, name=replica or "test"), limits,
                         replica=replica)

    async def aclose(self) -> None:
        await super().aclose()
        await self.shared.aclose()
