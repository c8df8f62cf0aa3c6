"""The attacks of issue 14 on the server layer, measured against one source tree (bounded, loopback only).

    python bench/server_limits.py                  # this checkout
    python bench/server_limits.py --tree /tmp/main # another tree, e.g. `git archive main | tar -x -C /tmp/main`

It starts the real CLI (mock model, default server settings) and reports:
- head: one connection sends up to --head-mib MiB of `a: b` header lines (and, separately, one endless header);
  the bytes the server took, its answer, the proxy's resident memory before and after, and its peak;
- idle: --idle connections that send nothing and as many that send half a head; how many are still open
  after each second, for up to --watch seconds;
- flood: --flood connections at once; how many get 503 at once, and when /healthz answers 200 again
  (with --server-nofile 256 --flood 300: the issue's file-descriptor exhaustion).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "default_model: mock\nmodels: [{name: mock, adapter: mock}]\nserver: {port: %d}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to run (default: this checkout)")
    parser.add_argument("--head-mib", type=int, default=16)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--flood", type=int, default=3000)
    parser.add_argument("--watch", type=float, default=30.0)
    parser.add_argument("--server-nofile", type=int, help="the proxy's open-file limit (prlimit), e.g. 256")
    parser.add_argument("--phases", default="head-lines,head-one,idle,flood")
    args = parser.parse_args()
    phases = {"head-lines": head_lines, "head-one": head_one, "idle": idle_connections, "flood": flood}
    for name in args.phases.split(","):
        with proxy(args.tree, args.server_nofile) as (process, port):
            phases[name](process, port, args)
    return 0


@contextmanager
def proxy(tree: Path, nofile: int | None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The CLI from `tree` on a free port; `nofile` runs it under `prlimit`."""
    port = free_port()
    limit = ["prlimit", f"--nofile={nofile}:{nofile}"] if nofile else []
    with tempfile.TemporaryDirectory(prefix="server-limits-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG % port)
        argv = [*limit, sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(config), "--log-level", "error"]
        process = subprocess.Popen(argv, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not healthy(port):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the proxy did not start")
                time.sleep(0.1)
            yield process, port
        finally:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak), in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def head_lines(process: subprocess.Popen[bytes], port: int, args: argparse.Namespace) -> None:
    head_attack(process, port, args, "small headers", b"a: b\r\n" * 10_000)


def head_one(process: subprocess.Popen[bytes], port: int, args: argparse.Namespace) -> None:
    head_attack(process, port, args, "one endless header", b"x-big: " + b"y" * 60_000, b"y" * 60_000)


def head_attack(process: subprocess.Popen[bytes], port: int, args: argparse.Namespace, name: str, first: bytes,
                block: bytes | None = None) -> None:
    total = args.head_mib * 1024 * 1024
    block = block or first
    before = memory(process.pid)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        sent = 0
        try:
            sock.sendall(first)
            sent += len(first)
            while sent < total:
                sock.sendall(block)
                sent += len(block)
            sock.settimeout(5)
            answer = sock.recv(200).split(b"\r\n", 1)[0].decode() or "(closed)"
        except (ConnectionResetError, BrokenPipeError):
            answer = "(reset: the server answered and closed; tests/test_server_limits.py reads the 431)"
        except TimeoutError:
            answer = "(no answer within 5 s: still waiting for the end of the head)"
        after = memory(process.pid)
    print(f"head, {name}: sent {sent / 2**20:.2f} MiB of {args.head_mib} MiB in "
          f"{time.monotonic() - started:.2f} s; answer {answer!r}; RSS {before['VmRSS'] / 1024:.1f} -> "
          f"{after['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB")


def still_open(socks: list[socket.socket]) -> int:
    """Sockets the server has not closed: not readable, or readable with data but no EOF."""
    poll = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poll.register(fd, select.POLLIN)
    closed = set()
    for fd, _ in poll.poll(0):
        sock = by_fd[fd]
        try:
            if sock.recv(65536, socket.MSG_PEEK) == b"" or b"connection: close" in sock.recv(65536, socket.MSG_PEEK):
                closed.add(sock)
        except ConnectionResetError:
            closed.add(sock)
    return len(socks) - len(closed)


def idle_connections(process: subprocess.Popen[bytes], port: int, args: argparse.Namespace) -> None:
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
    half = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
    for sock in half:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
    started = time.monotonic()
    rows = []
    while time.monotonic() - started < args.watch:
        time.sleep(1)
        counts = still_open(idle), still_open(half)
        rows.append(f"{time.monotonic() - started:.0f}s {counts[0]}/{counts[1]}")
        if counts == (0, 0):
            break
    print(f"idle: {args.idle} silent / {args.idle} half-head connections still open: " + ", ".join(rows))
    for sock in idle + half:
        sock.close()


def flood(process: subprocess.Popen[bytes], port: int, args: argparse.Namespace) -> None:
    before = memory(process.pid)
    socks = []
    for _ in range(args.flood):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    started = time.monotonic()
    time.sleep(1)
    refused = len(socks) - still_open(socks)
    after = memory(process.pid)
    while not healthy(port) and time.monotonic() - started < args.watch:
        time.sleep(0.5)
    back = f"{time.monotonic() - started:.1f} s" if healthy(port) else f"not within {args.watch:g} s"
    print(f"flood: {len(socks)} connections opened, {refused} refused (503 or closed) within 1 s; "
          f"RSS {before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MiB; /healthz 200 again after {back}")
    for sock in socks:
        sock.close()


if __name__ == "__main__":
    raise SystemExit(main())
