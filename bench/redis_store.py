"""A quick, bounded measurement of RedisStore's write path and memory (`make bench`'s resume phase imports `memory`).

Starts its own redis-server on a free loopback port, in a temp dir, and reports:
- appended events/s and this process's CPU µs per event, for 1 stream and for 100 concurrent streams,
  with 1 and 16 frames per append (the writer pipelines the calls that arrive together);
- Redis `used_memory` per 1,000 finished (retained) 500-event streams of 60-byte frames;
- resume latency at the store: another replica's `read(sid, after)` to its first frame, p50/p99, for a
  finished 100-event stream (the HTTP layer adds its own request handling on top).

    .venv/bin/python -m bench.redis_store [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from llm_sse_proxy.proxy.resume.ids import new_sid
from llm_sse_proxy.proxy.state.streams.redis_store import RedisStore, RedisStoreLimits
from llm_sse_proxy.proxy.state.streams.store import StreamMeta
from tests.redis_fixtures import ReplicaStore, run_redis_server

FRAME = b"id: " + b"x" * 22 + b":123\ndata: {\"text\":\"" + b"y" * 20 + b"\"}\n\n"  # 60 bytes


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def write(store: RedisStore, streams: int, events: int, per_call: int) -> tuple[float, float, float]:
    leases = [await store.create(new_sid(), StreamMeta("bench")) for _ in range(streams)]
    calls_each = events // streams // per_call
    flushes, calls = store.writer.flushes, store.writer.calls

    async def one(lease) -> None:
        for i in range(calls_each):
            await store.append(lease, 1 + i * per_call, [FRAME] * per_call)

    heartbeats = [asyncio.create_task(store.wait_stop(lease)) for lease in leases]  # the owners' lease renewals
    began, cpu0 = time.perf_counter(), cpu()
    await asyncio.gather(*(one(lease) for lease in leases))
    wall, used = time.perf_counter() - began, cpu() - cpu0
    for beat in heartbeats:
        beat.cancel()
    total = calls_each * per_call * streams
    per_flush = (store.writer.calls - calls) / max(1, store.writer.flushes - flushes)
    return total / wall, used / total * 1e6, per_flush


async def memory(url: str, streams: int, events: int) -> float:
    store = ReplicaStore(url, RedisStoreLimits(retention=3600, lease=3600))
    client = aioredis.Redis.from_url(url)
    before = (await client.info("memory"))["used_memory"]

    async def one() -> None:
        sid = new_sid()
        lease = await store.create(sid, StreamMeta("bench"))
        for first in range(1, events, 50):
            await store.append(lease, first, [FRAME] * min(50, events - first))
        await store.finish(lease, events, FRAME, "stop")

    for start in range(0, streams, 50):
        await asyncio.gather(*(one() for _ in range(min(50, streams - start))))
    after = (await client.info("memory"))["used_memory"]
    await client.aclose()
    await store.aclose()
    return (after - before) / streams * 1000


async def resume_latency(url: str, samples: int) -> tuple[float, float]:
    owner, other = ReplicaStore(url), ReplicaStore(url)
    sid = new_sid()
    lease = await owner.create(sid, StreamMeta("bench"))
    await owner.append(lease, 1, [FRAME] * 99)
    await owner.finish(lease, 100, FRAME, "stop")
    took = []
    for i in range(samples):
        began = time.perf_counter()
        frames = other.read(sid, i % 99)
        await anext(frames)
        took.append(time.perf_counter() - began)
        await frames.aclose()
    await owner.aclose()
    await other.aclose()
    took.sort()
    return took[len(took) // 2] * 1e3, took[int(len(took) * 0.99)] * 1e3


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, run_redis_server(Path(tmp)) as server:
        server.command("CONFIG", "SET", "maxmemory", "0")
        store = ReplicaStore(server.url, RedisStoreLimits(grace=3600))
        for streams, per_call in ((1, 1), (100, 1), (1, 16), (100, 16)):
            rate, us, per_flush = await write(store, streams, events, per_call)
            print(f"{streams:>3} streams, {per_call:>2} frames/append: {rate:>9,.0f} events/s, "
                  f"{us:6.1f} µs CPU/event (client), {per_flush:5.1f} appends/round trip")
        await store.aclose()
        server.command("FLUSHALL")
        per_1000 = await memory(server.url, 1000, 500)
        print(f"Redis used_memory per 1,000 retained 500-event streams (60-byte frames): {per_1000 / 2**20:.1f} MiB")
        p50, p99 = await resume_latency(server.url, 500)
        print(f"resume on another replica, read() to first frame: p50 {p50:.2f} ms, p99 {p99:.2f} ms (500 reads)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().events))
