"""`make bench`'s resume phase (issue 10): resume latency, and what a retained stream costs in memory.

Each figure is measured by the code of the script that measures it alone, imported: resume latency by
bench/resume_latency.py (reconnect with Last-Event-ID to the first replayed event, a finished 100-event
stream, cursor at its middle), memory per retained stream by bench/resume_memory.py (tracemalloc, the
memory store in this process), Redis memory per 1,000 retained 500-event streams by bench/redis_store.py
(`INFO memory` before and after). Here they run against the bench's own proxies, mock and redis-server.
With Redis, the stream is started on one replica and resumed on another (the point of the Redis store).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

import paths
import procs
import resume_latency
import resume_memory
from paths import PathSpec
from stats import percentile

sys.path.insert(1, str(paths.ROOT))  # redis_store and the redis-server fixture import proxy and tests
import redis_store  # noqa: E402

from tests.redis_fixtures import RedisServer, run_redis_server  # noqa: E402

EVENTS = 500  # per retained stream (issue 10: "per 1,000 retained 500-event streams")
PER_STREAM = 10  # reconnects to each finished stream


@dataclass(frozen=True)
class Sizes:
    reconnects: int  # per store
    retained: int  # streams kept, for the memory figures


FULL, QUICK = Sizes(reconnects=500, retained=1000), Sizes(reconnects=100, retained=300)


@contextmanager
def redis_for(needed: bool, directory: Path, notes: list[str]) -> Iterator[RedisServer | None]:
    """One redis-server for the whole run (Debian's, on a free loopback port), or None with a note."""
    if not needed:
        yield None
    elif shutil.which("redis-server") is None:
        notes.append("redis-server is missing (apt-get install redis-server): the Redis rows are left out")
        yield None
    else:
        with run_redis_server(directory) as redis:
            redis.command("CONFIG", "SET", "maxmemory", "0")  # the fixture's 64 MB cap is for tests
            yield redis


def measure(mock_port: int, workdir: Path, redis: RedisServer | None, quick: bool, core: int, out: Path,
            say: Callable[[str], None]) -> dict:
    """The phase's figures; without a redis-server, the memory store's only. Servers are pinned to `core`."""
    sizes = QUICK if quick else FULL
    found: dict = {"memory_store": asyncio.run(resume_memory.per_stream(sizes.retained, EVENTS))}
    say(f"  memory store: {found['memory_store']['bytes_per_stream']:,.0f} B per retained {EVENTS}-event stream")
    if redis is not None:
        redis.command("FLUSHALL")  # what the CPU phase left would expire during the count
        per_1000 = asyncio.run(redis_store.memory(redis.url, sizes.retained, EVENTS))
        found["redis_memory"] = {"streams": sizes.retained, "events": EVENTS, "bytes_per_1000_streams": per_1000}
        say(f"  Redis: {per_1000 / 2**20:.1f} MiB per 1,000 retained {EVENTS}-event streams")
        redis.command("FLUSHALL")
    stores = {"memory": [paths.proxy(mock_port, workdir, name="resume-latency-memory")]}
    if redis is not None:
        stores["redis"] = [paths.proxy_redis(mock_port, workdir, redis.url, name=f"resume-latency-redis-{n}")
                           for n in "ab"]
    found["latency"] = {}
    for store, specs in stores.items():
        try:
            point = found["latency"][store] = latency(specs, sizes.reconnects, core, out)
        except (RuntimeError, OSError, httpx2.HTTPError) as exc:  # one failed figure must not lose the run's others
            found["latency"][store] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"  resume latency, {store}: failed: {exc}")
            continue
        say(f"  resume latency, {store}: p50 {point['p50_ms']:.2f} ms, p99 {point['p99_ms']:.2f} ms "
            f"({point['reconnects']} reconnects{', on another replica' if point['cross_replica'] else ''})")
    return found


def latency(specs: list[PathSpec], reconnects: int, core: int, out: Path) -> dict:
    """Streams start on the first server and are resumed on the last (the same one when there is one)."""
    with serving(specs, core, out):
        took = resume_latency.measure(_base(specs[0]), reconnects, PER_STREAM, resume_base=_base(specs[-1]))
    return summary(took, cross_replica=len(specs) > 1)


def summary(seconds: list[float], cross_replica: bool) -> dict:
    """p50 and p99 in ms by nearest rank (bench/stats.py), and how many reconnects they come from."""
    return {"reconnects": len(seconds), "p50_ms": percentile(seconds, 50) * 1e3,
            "p99_ms": percentile(seconds, 99) * 1e3, "cross_replica": cross_replica}


def _base(spec: PathSpec) -> str:
    return f"http://127.0.0.1:{spec.port}"


@contextmanager
def serving(specs: list[PathSpec], core: int | str | None, out: Path, *, stream: bool = True) -> Iterator[None]:
    """The servers of `specs`, started together, each serving a stream (or, `stream=False`, answering
    /healthz: no request spent on a rate limit) and then idle; stopped afterwards."""
    with ExitStack() as stack:
        started = []
        for spec in specs:
            server = procs.start(spec.name, spec.argv, core, spec.env, log=str(out / "raw" / f"{spec.name}.log"))
            stack.callback(server.stop)
            started.append((spec, server))
        for spec, server in started:
            ready = (procs.wait_first_event(server, spec.port, spec.request("n100-i0"), 30) is not None if stream
                     else procs.wait_healthy(server, spec.port, 30))
            if not ready:
                raise RuntimeError(f"{spec.name} did not start in time; see bench/results/raw/{spec.name}.log")
        for _, server in started:
            procs.wait_idle(server, 30)  # at worst, a worker still starting takes fewer of the connections
        yield
