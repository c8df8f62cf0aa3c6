"""RedisStore against a real redis-server: the whole `StreamStore` contract, then what only Redis has
(lease loss and REAP, TTLs on every key, Redis going away)."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import aclosing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import tests.test_resume_store as contract
from llm_sse_proxy.proxy.resume.errors import Fenced, ResumeGap, StoreUnavailable
from llm_sse_proxy.proxy.resume.ids import new_sid
from llm_sse_proxy.proxy.state.streams.redis_store import RedisStore, RedisStoreLimits
from llm_sse_proxy.proxy.state.streams.store import StreamMeta, StreamStore
from tests.redis_fixtures import ReplicaStore, RedisServer, run_redis_server, shared_redis  # noqa: F401 (a fixture)
from tests.test_resume_store import HANG, StoreFactory, collect, finished, frame, started

pytestmark = pytest.mark.anyio

# Short times, so that lease loss and abandonment happen within a second or two.
FAST = {"lease": 0.6, "block": 0.2, "heartbeat": 0.1}


@pytest.fixture
async def make_store(shared_redis: RedisServer) -> AsyncIterator[StoreFactory]:
    """The contract suite's fixture, for Redis: the tests below come from tests/test_resume_store.py."""
    made: list[StreamStore] = []

    def make(**limits: Any) -> StreamStore:
        limits.setdefault("grace", 30.0)
        made.append(store := ReplicaStore(shared_redis.url, RedisStoreLimits(**{**FAST, **limits})))
        return store

    yield make
    for store in made:
        await store.aclose()


# Every contract test that takes `make_store` runs here again, with the fixture above, except the one
# for the behaviour the Protocol lets a backend replace: Redis trims without knowing its readers'
# cursors, so a reader the cap overtakes gets ResumeGap instead (tested below).
MEMORY_ONLY = {"test_the_cap_keeps_the_frames_an_attached_reader_has_not_got"}
for _name, _test in inspect.getmembers(contract, inspect.isfunction):
    if _name.startswith("test_") and "make_store" in inspect.signature(_test).parameters and _name not in MEMORY_ONLY:
        globals()[_name] = _test


async def test_a_reader_the_cap_overtakes_gets_resume_gap(make_store: StoreFactory) -> None:
    store = make_store(max_events=10)
    sid, lease = await started(store, 1)
    async with aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        got = [await frames.__anext__()]  # attached, then slow
        await store.append(lease, 2, [frame(sid, s) for s in range(2, 31)])
        with pytest.raises(ResumeGap):
            got += [f async for f in frames]
    assert got == [frame(sid, 1)]


async def test_a_dead_owner_is_reaped_and_the_reader_gets_owner_lost(make_store: StoreFactory) -> None:
    owner, reader_side = make_store(), make_store()  # two replicas
    sid, lease = await started(owner, 3)
    reading = asyncio.create_task(collect(reader_side, sid, 1))
    await asyncio.sleep(0.05)
    await owner.aclose()  # it "dies": no more renewals; its lease runs out
    frames = await reading  # bounded by collect's HANG timeout
    assert frames[:2] == [frame(sid, 2), frame(sid, 3)] and len(frames) == 3
    assert frames[2].startswith(f"id: {sid}:4\n".encode()) and b'"type":"owner_lost"' in frames[2]
    status = await reader_side.status(sid)
    assert status is not None and (status.state, status.reason, status.last_seq) == ("finished", "error", 4)
    with pytest.raises(Fenced):  # the zombie owner, back from a pause, may write nothing more
        await reader_side.append(lease, 4, [frame(sid, 4)])
    with pytest.raises(Fenced):
        await reader_side.finish(lease, 4, frame(sid, 4), "stop")
    assert await collect(reader_side, sid, 0) == [frame(sid, 1), *frames]  # REAP ran once


async def test_a_living_owner_is_not_reaped_however_long_it_is_quiet(make_store: StoreFactory) -> None:
    store = make_store()
    sid, lease = await started(store, 1)
    owner = asyncio.create_task(store.wait_stop(lease))  # the heartbeat keeps the lease
    reader = asyncio.create_task(collect(store, sid, 1))
    await asyncio.sleep(3 * FAST["lease"])
    assert not reader.done() and not owner.done()
    await store.finish(lease, 2, frame(sid, 2), "stop")
    assert await reader == [frame(sid, 2)]
    owner.cancel()


async def test_every_key_has_a_ttl(make_store: StoreFactory, shared_redis: RedisServer) -> None:
    store = make_store()
    running, _ = await started(store, 3)
    done, _ = await finished(store, 2)
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        keys = [k for sid in (running, done) async for k in client.scan_iter(f"llmsse:{{{sid}}}:*")]
        ttls = {key: await client.pttl(key) for key in keys}
    finally:
        await client.aclose()
    assert len(keys) == 6  # running: meta, events, lease, readers; finished: meta, events
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_redis_going_away_is_store_unavailable_never_a_hang(tmp_path: Path) -> None:
    with run_redis_server(tmp_path) as server:
        store = ReplicaStore(server.url, RedisStoreLimits(**FAST))
        sid, lease = await started(store, 1)
        reader = asyncio.create_task(collect(store, sid, 1))
        await asyncio.sleep(0.05)
        server.stop()
        async with asyncio.timeout(HANG):
            with pytest.raises(StoreUnavailable):
                await store.append(lease, 2, [frame(sid, 2)])
            with pytest.raises(StoreUnavailable):
                await store.create(new_sid(), StreamMeta("me"))
            with pytest.raises(StoreUnavailable):
                await reader
        await store.aclose()


async def test_readers_on_another_replica_share_one_blocked_connection_and_free_it(
        make_store: StoreFactory, shared_redis: RedisServer) -> None:
    owner, store = make_store(), make_store(block=5.0)  # readers on another replica: one XREAD BLOCK for all
    streams = [await started(owner, 1) for _ in range(2)]
    readers = [asyncio.create_task(collect(store, sid, 1)) for sid, _ in streams for _ in range(3)]
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        async with asyncio.timeout(HANG):
            while not all(len(m.readers) == 3 for m in store.follower.mirrors.values()) or len(store.follower.mirrors) < 2:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            assert (await client.info("clients"))["blocked_clients"] == 1
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            while (await client.info("clients"))["blocked_clients"] > 0:  # woken, not left to its 5 s block
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def test_concurrent_appends_share_round_trips_and_survive_a_script_flush(
        make_store: StoreFactory, shared_redis: RedisServer) -> None:
    store = make_store()
    assert isinstance(store, RedisStore)
    streams = [await started(store) for _ in range(50)]
    shared_redis.command("SCRIPT", "FLUSH")  # as after a Redis restart: the scripts must be loaded again
    before = (store.writer.flushes, store.writer.calls)
    for seq in (1, 2):
        lasts = await asyncio.gather(*(store.append(lease, seq, [frame(sid, seq)]) for sid, lease in streams))
        assert lasts == [seq] * 50
    flushes, calls = store.writer.flushes - before[0], store.writer.calls - before[1]
    assert calls >= 100 and flushes < calls / 10, (flushes, calls)  # not one round trip per append
    sid, lease = streams[0]
    await store.finish(lease, 3, frame(sid, 3), "stop")
    assert await collect(store, sid, 0) == [frame(sid, s) for s in (1, 2, 3)]


async def test_a_reader_on_the_owning_replica_is_served_without_xread(make_store: StoreFactory,
                                                                      shared_redis: RedisServer) -> None:
    store = make_store()
    sid, lease = await started(store, 2)
    shared_redis.command("CONFIG", "RESETSTAT")
    reader = asyncio.create_task(collect(store, sid, 0))
    for seq in range(3, 20):
        await store.append(lease, seq, [frame(sid, seq)])
    await store.finish(lease, 20, frame(sid, 20), "stop")
    assert await reader == [frame(sid, s) for s in range(1, 21)]
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    assert "cmdstat_xread" not in stats and stats["cmdstat_evalsha"]["calls"] >= 18
    assert await collect(store, sid, 18) == [frame(sid, 19), frame(sid, 20)]  # after the end: from Redis


async def test_a_local_reader_whose_owner_stops_renewing_gets_owner_lost(make_store: StoreFactory) -> None:
    store = make_store()
    sid, _ = await started(store, 2)  # nobody runs wait_stop: the lease runs out as if the loop had hung
    frames = await collect(store, sid, 1)
    assert frames[0] == frame(sid, 2) and len(frames) == 2 and b'"type":"owner_lost"' in frames[1]


async def test_the_writer_sends_a_batch_again_on_a_new_connection_when_its_own_was_cut(
        make_store: StoreFactory, shared_redis: RedisServer) -> None:
    store = make_store()
    sid, lease = await started(store, 1)
    shared_redis.command("CLIENT", "KILL", "TYPE", "normal")  # every client connection, the writer's included
    async with asyncio.timeout(HANG):
        assert await store.append(lease, 2, [frame(sid, 2)]) == 2
        await store.finish(lease, 3, frame(sid, 3), "stop")
    assert await collect(store, sid, 0) == [frame(sid, s) for s in (1, 2, 3)]


async def test_a_stop_on_another_replica_wakes_the_owner_without_waiting_for_its_heartbeat(
        shared_redis: RedisServer) -> None:
    slow = RedisStoreLimits(lease=60.0, block=0.2, heartbeat=60.0)  # the flag alone would take a minute
    owner, other = ReplicaStore(shared_redis.url, slow, replica="a"), ReplicaStore(shared_redis.url, slow, replica="b")
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        sid = new_sid()
        lease = await owner.create(sid, StreamMeta("me"))
        waiting = asyncio.create_task(owner.wait_stop(lease))
        async with asyncio.timeout(HANG):
            while (await client.pubsub_numsub("llmsse:stop:a"))[0][1] == 0:
                await asyncio.sleep(0.01)  # the owner's replica listens on its channel
            await asyncio.sleep(0.05)  # the heartbeat's first renewal is done: only the message can wake it now
            await other.request_stop(sid)
            assert await waiting == "stopped"
    finally:
        await owner.aclose()
        await other.aclose()
        await client.aclose()


async def test_a_label_outlives_the_running_ttl_while_its_owner_beats(make_store: StoreFactory) -> None:
    """A stream that runs for longer than retention + grace keeps its label: the heartbeat renews it."""
    store = make_store(grace=0.3, retention=0.2)  # labels are set for 0.5 s
    sid = new_sid()
    lease = await store.create(sid, StreamMeta("me", label="long-chat"))
    owner = asyncio.create_task(store.wait_stop(lease))
    reader = asyncio.create_task(collect(store, sid, 0))  # present: no abandonment
    await asyncio.sleep(1.5)
    assert await store.labelled("long-chat") == sid and not owner.done()
    await store.finish(lease, 1, frame(sid, 1), "stop")
    assert await reader == [frame(sid, 1)]
    owner.cancel()
