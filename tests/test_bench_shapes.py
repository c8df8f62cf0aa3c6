"""make bench's upstream shapes (issue 27): the aiohttp mock (one write per event) sends the raw mock's bytes,
each level asks the mocks for its shape, and the raw mock sees a client that leaves a paced stream."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
try:
    import interleave
    import peers
    import procs
    from load_client import dechunk
finally:
    sys.path.remove(str(ROOT / "bench"))  # the other tests import from the project's root, not from bench/


@pytest.fixture(scope="module")
def mocks() -> Iterator[dict[str, int]]:
    """Both mocks as the bench runs them: their own processes on free loopback ports."""
    ports = {"raw": procs.free_port(), "aiohttp": procs.free_port()}
    started = [subprocess.Popen([sys.executable, str(ROOT / "bench" / f"mock_{'upstream' if name == 'raw' else name}.py"),
                                 "--port", str(port)], cwd=ROOT / "bench") for name, port in ports.items()]
    try:
        assert all(procs.wait_listening(port, 15) for port in ports.values())
        yield ports
    finally:
        for process in started:
            process.terminate()
            process.wait(10)


def ask(port: int, model: str) -> bytes:
    """One streamed answer's raw bytes, head and chunked body, read to the server's close."""
    body = b'{"model":"%s","stream":true}' % model.encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while part := sock.recv(65536):
            data += part
    return data


def chunk_count(body: bytes) -> int:
    count, at = 0, 0
    while (size := int(body[at : body.index(b"\r\n", at)], 16)) > 0:
        count, at = count + 1, body.index(b"\r\n", at) + 2 + size + 2
    return count


@pytest.mark.parametrize("n", [1, 5, 100])
def test_the_aiohttp_mock_sends_the_raw_mocks_events_one_chunk_each(mocks: dict[str, int], n: int) -> None:
    raw = ask(mocks["raw"], f"n{n}-i0").partition(b"\r\n\r\n")[2]
    for model in (f"n{n}-i0", f"w-n{n}-i0"):  # the floor passes the per-write prefix through
        head, _, body = ask(mocks["aiohttp"], model).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        assert dechunk(body) == dechunk(raw)
        assert chunk_count(body) == chunk_count(raw) == n + 3  # the content events, the finish, the usage, [DONE]


@pytest.mark.parametrize(("key", "model", "stagger", "shape"), [
    ("c10", "n100-i0", 0.0, "burst"), ("one-chunk", "n1-i0", 0.0, "burst"), ("paced-c100", "n50-i20", 1.0, "paced"),
    ("per-write-c100", "w-n100-i0", 0.0, "per-write")])
def test_each_level_asks_for_its_shape(key: str, model: str, stagger: float, shape: str) -> None:
    levels = {level.key: level for level in interleave.levels(((10, 100, 1.0),), 1.0, ((100, 2.0),), ((100, 100, 1.0),))}
    level = levels[key]
    assert (level.model, level.stagger, level.shape) == (model, stagger, shape)


def test_the_mock_sees_a_client_leave_a_paced_stream(mocks: dict[str, int]) -> None:
    assert peers.streams_in_flight(mocks["raw"]) == 0
    with socket.create_connection(("127.0.0.1", mocks["raw"]), timeout=10) as sock:
        body = b'{"model":"n400-i50"}'
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        data = b""
        for _ in range(10):  # the head and the first event may come in separate reads
            data += sock.recv(65536)
            if b"data: " in data:
                break
        assert b"data: " in data
        assert peers.streams_in_flight(mocks["raw"]) == 1
    deadline = time.monotonic() + 10
    while peers.streams_in_flight(mocks["raw"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert peers.streams_in_flight(mocks["raw"]) == 0
