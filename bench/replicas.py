"""`make bench`'s replicas phase (issue 10): 2 workers behind one port, and 2 replicas on two ports with one Redis.

Each set-up runs twice. First for throughput: limits lifted, zero-delay 100-chunk streams at c=100 (over both
ports for the replicas), the servers free to use every core (the mock and the client share core 1). Then
for exactness: `burst: 20` and a refill of one request per 100 minutes, 40 one-chunk streams asked 8 at a
time over fresh connections (spread over the workers by the kernel, or round-robin over the replicas); a
shared limit admits exactly 20 (200) and refuses the other 20 (429). The Redis set-ups set `resume.redis_url`
with `store: redis`, so the buckets, stream slots and stream events are shared; "no Redis" shows what two
workers with their own buckets admit.
"""

from __future__ import annotations

import socket
import subprocess
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paths
import procs
import resume_phase
from paths import PathSpec

BURST = 20
ASKED = 2 * BURST
AT_ONCE = 8
EXACT_LIMITS = {"burst": BURST, "requests_per_minute": 0.01}  # no refill within the check
CONCURRENCY = 100

RunClient = Callable[..., dict]  # run.run_client


@dataclass(frozen=True)
class Setup:
    key: str
    processes: int  # replicas, each on its own port
    workers: int  # per replica, behind its one port
    redis: bool


SETUPS = (Setup("2 workers, one port, Redis", 1, 2, True), Setup("2 replicas, two ports, one Redis", 2, 1, True),
          Setup("2 workers, one port, no Redis", 1, 2, False))


def measure(mock_port: int, workdir: Path, redis: resume_phase.RedisServer | None, seconds: float, run_client: RunClient,
            out: Path, say: Callable[[str], None]) -> dict:
    """{set-up: {throughput, admission}}; the Redis set-ups are left out without a redis-server."""
    found = {}
    for setup in SETUPS:
        if setup.redis and redis is None:
            continue
        try:
            point = found[setup.key] = one_setup(setup, mock_port, workdir, redis, seconds, run_client, out)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # keep the run's other figures
            found[setup.key] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"  {setup.key}: failed: {exc}")
            continue
        say(f"  {setup.key}: {point['throughput']['streams_per_s']:.0f} streams/s "
            f"({point['throughput']['bad']} bad); burst {BURST}, {ASKED} asked: "
            f"{point['admission']['admitted']} admitted, {point['admission']['refused']} refused, "
            f"{point['admission']['other']} other")
    return found


def one_setup(setup: Setup, mock_port: int, workdir: Path, redis: resume_phase.RedisServer | None, seconds: float,
              run_client: RunClient, out: Path) -> dict:
    """Streams/s with limits lifted, then the burst check on other servers with the burst set (started at the
    same time, idle until then, no request spent on their limit before it)."""
    redis_url = redis.url if redis else None
    lifted = _specs(setup, mock_port, workdir, redis_url, "fast", None)
    limited = _specs(setup, mock_port, workdir, redis_url, "exact", EXACT_LIMITS)
    with resume_phase.serving(lifted + limited, procs.ALL_CORES, out, stream=False):
        speed = throughput(lifted, seconds, run_client)
        if redis is not None:
            redis.command("FLUSHALL")  # the buckets the throughput run filled, under the same client address
        return {"throughput": speed, "admission": admission(ask(limited), BURST), "shared": setup.redis}


def _specs(setup: Setup, mock_port: int, workdir: Path, redis_url: str | None, tag: str,
           limits: dict | None) -> list[PathSpec]:
    found = []
    for n in range(setup.processes):
        name = f"{setup.key.replace(', ', '-').replace(' ', '')}-{tag}-{n}"
        if setup.redis:
            found.append(paths.proxy_redis(mock_port, workdir, str(redis_url), name=name, workers=setup.workers,
                                           limits=limits))
        else:
            found.append(paths.proxy(mock_port, workdir, name=name, workers=setup.workers,
                                     extra={"limits": limits} if limits else None))
    return found


def throughput(specs: list[PathSpec], seconds: float, run_client: RunClient) -> dict:
    """Streams/s of all the servers together: one load client per port, run at the same time."""
    each = CONCURRENCY // len(specs)
    for spec in specs:
        run_client(spec, "n100-i0", 100, concurrency=10, streams=100, duration=1)  # warm-up
    with ThreadPoolExecutor(len(specs)) as pool:
        runs = list(pool.map(lambda s: run_client(s, "n100-i0", 100, concurrency=each, duration=seconds), specs))
    return combined(runs)


def combined(runs: list[dict]) -> dict:
    """Load clients that ran side by side: their streams over the longest wall time."""
    wall = max(r["wall"] for r in runs)
    ok = sum(r["ok"] for r in runs)
    return {"ok": ok, "bad": sum(r["bad"] for r in runs), "wall_s": wall, "streams_per_s": ok / wall if wall else 0.0}


def ask(specs: list[PathSpec]) -> list[int]:
    """ASKED one-chunk streams, AT_ONCE at a time, round-robin over `specs`: each one's HTTP status."""
    targets = [specs[i % len(specs)] for i in range(ASKED)]
    with ThreadPoolExecutor(AT_ONCE) as pool:
        return list(pool.map(status, targets))


def status(spec: PathSpec) -> int:
    """The status of one streamed answer, read to its end on a fresh connection; 0 if none came."""
    try:
        with socket.create_connection(("127.0.0.1", spec.port), timeout=10) as sock:
            sock.sendall(spec.request("n1-i0"))  # Connection: close, so the server ends it
            data = b""
            while part := sock.recv(65536):
                data += part
    except OSError:
        return 0
    head = data.split(b" ", 2)
    return int(head[1]) if len(head) > 1 and head[0].startswith(b"HTTP/") and head[1].isdigit() else 0


def admission(statuses: list[int], configured: int) -> dict:
    """200s and 429s among the answers; exact when exactly `configured` were admitted and all others refused."""
    counts = Counter(statuses)
    admitted, refused = counts[200], counts[429]
    other = len(statuses) - admitted - refused
    return {"asked": len(statuses), "configured": configured, "admitted": admitted, "refused": refused,
            "other": other, "exact": admitted == configured and other == 0}
