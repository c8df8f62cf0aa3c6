"""Processes for the bench: start pinned, stop by PID, read CPU and memory from /proc, time start-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# For processes meant to use the whole machine: the runner pins itself to one core, and children inherit that.
ALL_CORES = f"0-{(os.cpu_count() or 1) - 1}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    started: float  # perf_counter just before the process was spawned

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[int]:
        """This process and all its descendants (workers, resource trackers)."""
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(_stat(int(entry))[1])
                except (OSError, IndexError):
                    continue
                parents.setdefault(ppid, []).append(int(entry))
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += parents.get(pid, [])
        return found

    def cpu(self) -> float:
        """Seconds of CPU (user + system, all threads) used so far by the whole tree."""
        total = 0
        for pid in self.tree():
            try:
                fields = _stat(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return total / TICK

    def syscalls(self) -> tuple[int, int]:
        """Read and write system calls so far (`syscr`, `syscw` of /proc/PID/io) of the whole tree: a socket's
        read and write/writev count, so their change over a run says how many events each one carried."""
        reads = writes = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/io") as f:
                    fields = dict(line.split(": ", 1) for line in f.read().splitlines())
            except OSError:
                continue
            reads, writes = reads + int(fields["syscr"]), writes + int(fields["syscw"])
        return reads, writes

    def rss(self) -> int:
        """Resident bytes of the whole tree."""
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * PAGE
            except OSError:
                continue
        return total

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in reversed(self.tree()):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.popen.wait(5)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()  # fields from `state` on: the name may hold spaces


def start(name: str, argv: list[str], core: int | str | None, env: dict[str, str] | None = None,
          log: str | None = None, cwd: str | None = None) -> Proc:
    pinned = ["taskset", "-c", str(core), *argv] if core is not None else argv
    out = open(log, "wb") if log else subprocess.DEVNULL
    started = time.perf_counter()
    popen = subprocess.Popen(pinned, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    return Proc(name, popen, started)


def wait_first_event(proc: Proc, port: int, request: bytes, timeout: float) -> float | None:
    """Seconds from spawn to the first complete SSE event of a streamed answer; None on timeout."""
    deadline = proc.started + timeout
    while time.perf_counter() < deadline:
        if proc.popen.poll() is not None:
            return None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(request)
                data = b""
                while True:
                    part = sock.recv(65536)
                    if not part:
                        break
                    data += part
                    head, sep, body = data.partition(b"\r\n\r\n")
                    if sep and not head.startswith(b"HTTP/1.1 200"):
                        break
                    if sep and b"\n\n" in body:
                        return time.perf_counter() - proc.started
        except OSError:
            pass
        time.sleep(0.01)
    return None


def wait_healthy(proc: Proc, port: int, timeout: float) -> bool:
    """True once GET /healthz answers 200: ready, without spending a request of the rate limit on it."""
    deadline = proc.started + timeout
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline and proc.popen.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def wait_idle(proc: Proc, timeout: float, window: float = 0.3) -> bool:
    """True once the tree uses almost no CPU for `window` s: every worker has finished starting, not only the
    first to answer (the kernel hands a shared socket's connections to whichever worker accepts)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        used = proc.cpu()
        time.sleep(window)
        if proc.cpu() - used < window / 20:
            return True
    return False


def wait_listening(port: int, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
