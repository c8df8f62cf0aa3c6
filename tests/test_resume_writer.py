"""The writer's batches: the frames emitted while one append is in flight go together in the next one.

Against a real redis-server (the store that batches) and the real MemoryStore, which appends each frame
at once; `GatedStore` wraps the MemoryStore to play a store whose append is a round trip that the test
holds open (the slow network is the edge we do not own), so that what is queued meanwhile is exact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest

from llm_sse_proxy.proxy.relay.relay import Emit
from llm_sse_proxy.proxy.resume.errors import StoreUnavailable
from llm_sse_proxy.proxy.resume.generations import Generations
from llm_sse_proxy.proxy.resume.ids import new_sid
from llm_sse_proxy.proxy.state.streams.memory import MemoryStore
from llm_sse_proxy.proxy.state.streams.redis_store import RedisStore, RedisStoreLimits
from llm_sse_proxy.proxy.state.streams.store import Lease, StreamMeta, StreamStore
from llm_sse_proxy.proxy.resume.writer import PendingLimit, Writer
from llm_sse_proxy.proxy.relay.sse import terminate_payload, text_payload
from tests.redis_fixtures import ReplicaStore, RedisServer, run_redis_server, shared_redis  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio
HANG = 10


class GatedStore(MemoryStore):
    """A MemoryStore whose appends wait for `gate` (a round trip held open) and record their batches."""

    batches_appends = True

    def __init__(self, fail_at_append: int | None = None) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[tuple[str, int, int]] = []  # ("append" | "finish", first seq, frames)
        self.fail_at_append = fail_at_append

    async def append(self, lease: Lease, first_seq: int, frames: Sequence[bytes]) -> int:
        self.calls.append(("append", first_seq, len(frames)))
        await self.gate.wait()
        if self.fail_at_append == sum(1 for call in self.calls if call[0] == "append"):
            raise StoreUnavailable("the store is down")
        return await super().append(lease, first_seq, frames)

    async def finish(self, lease: Lease, seq: int, frame: bytes, reason: str) -> None:
        self.calls.append(("finish", seq, 1))
        await super().finish(lease, seq, frame, reason)


@pytest.fixture
async def redis_store(shared_redis: RedisServer) -> AsyncIterator[RedisStore]:
    store = ReplicaStore(shared_redis.url, RedisStoreLimits(lease=0.6, block=0.2, heartbeat=0.1))
    yield store
    await store.aclose()


async def events_of(store: StreamStore, sid: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, data) of every frame stored, in order."""
    async with asyncio.timeout(HANG), aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        found = []
        async for frame in frames:
            head, data = frame.split(b"\ndata: ", 1)
            found.append((head.removeprefix(b"id: ").decode(), json.loads(data)))
        return found


def assert_whole(events: list[tuple[str, dict[str, Any]]], sid: str, count: int, reason: str = "stop") -> None:
    """Seqs 1..count + 1 once each, the texts in order, one terminate, last."""
    assert [e[0] for e in events] == [f"{sid}:{seq}" for seq in range(1, count + 2)]
    assert [e[1].get("text") for e in events[:-1]] == [str(i) for i in range(count)]
    assert events[-1][1]["action"] == "terminate" and events[-1][1]["reason"] == reason


async def burst(emit: Emit, count: int) -> None:
    """`count` texts and the terminate, never yielding to the loop but inside `emit`."""
    for i in range(count):
        await emit(text_payload(str(i)))
    await emit(terminate_payload("stop"))


async def test_a_burst_on_redis_is_stored_whole_in_a_few_appends(redis_store: RedisStore) -> None:
    endings: list[str | None] = []
    generations = Generations(redis_store)
    calls_before = redis_store.writer.calls
    sid = await generations.start("", lambda emit: burst(emit, 1000), endings.append)
    events = await events_of(redis_store, sid)
    assert_whole(events, sid, 1000)
    # 1000 frames at most 256 per append, and the finish: not one round trip per event.
    assert redis_store.writer.calls - calls_before <= 10
    async with asyncio.timeout(HANG):
        while generations:
            await asyncio.sleep(0.01)
    assert endings == [None]


async def test_a_paced_producer_on_redis_keeps_order_and_seq(redis_store: RedisStore) -> None:
    async def paced(emit: Emit) -> None:
        for i in range(200):
            await emit(text_payload(str(i)))
            if i % 7 == 0:
                await asyncio.sleep(0)  # let some appends go with one frame, some with several
        await emit(terminate_payload("stop"))

    sid = await Generations(redis_store).start("", paced)
    assert_whole(await events_of(redis_store, sid), sid, 200)


async def test_frames_emitted_while_an_append_is_in_flight_go_in_the_next_one() -> None:
    store = GatedStore()
    store.gate.clear()
    held = asyncio.Event()

    async def produce(emit: Emit) -> None:
        await emit(text_payload("0"))
        await asyncio.sleep(0.01)  # the first append leaves, and is held
        for i in range(1, 10):
            await emit(text_payload(str(i)))  # returns at once: queued behind the held append
        held.set()
        await emit(terminate_payload("stop"))  # stored only after all of the above

    sid = await Generations(store).start("", produce)
    async with asyncio.timeout(HANG):
        await held.wait()
    assert store.calls == [("append", 1, 1)]
    store.gate.set()
    assert_whole(await events_of(store, sid), sid, 10)
    assert store.calls == [("append", 1, 1), ("append", 2, 9), ("finish", 11, 1)]
    await store.aclose()


async def test_the_memory_store_is_appended_to_at_once_without_a_queue() -> None:
    store = MemoryStore()
    seen: list[int] = []

    async def produce(emit: Emit) -> None:
        for i in range(5):
            await emit(text_payload(str(i)))
            status = await store.status(sid)
            assert status is not None
            seen.append(status.last_seq)  # stored before emit returned: no added latency for readers
        await emit(terminate_payload("stop"))

    sid = new_sid()
    lease = await store.create(sid, StreamMeta(""))
    with anyio.CancelScope() as scope:
        writer = Writer(store, lease, scope)
        assert not writer.batched
        await produce(writer.emit)
    assert seen == [1, 2, 3, 4, 5]
    assert_whole(await events_of(store, sid), sid, 5)
    await store.aclose()


async def until_finished(writer: Writer) -> None:
    async with asyncio.timeout(HANG):
        while not writer.finished:
            await asyncio.sleep(0.01)


async def test_a_slow_store_holds_the_producer_at_the_bound() -> None:
    store = GatedStore()
    store.gate.clear()
    sid = new_sid()
    lease = await store.create(sid, StreamMeta(""))
    emitted = 0

    async def produce(emit: Emit) -> None:
        nonlocal emitted
        for i in range(1000):
            await emit(text_payload(str(i)))
            emitted += 1
        await emit(terminate_payload("stop"))

    async with anyio.create_task_group() as tasks:
        writer = Writer(store, lease, tasks.cancel_scope, pending=PendingLimit(frames=16, bytes=1 << 20))
        tasks.start_soon(writer.send_batches)
        tasks.start_soon(produce, writer.emit)
        for _ in range(50):
            await asyncio.sleep(0)  # plenty of turns for an unbounded producer to queue all 1000
        assert writer.pending == 16 and emitted == 15  # the 16th emit waits for the store
        store.gate.set()
        await until_finished(writer)
        tasks.cancel_scope.cancel()
    assert_whole(await events_of(store, sid), sid, 1000)
    assert max(frames for _, _, frames in store.calls) <= 16
    await store.aclose()


async def test_the_byte_bound_holds_too() -> None:
    store = GatedStore()
    store.gate.clear()
    sid = new_sid()
    lease = await store.create(sid, StreamMeta(""))
    async with anyio.create_task_group() as tasks:
        writer = Writer(store, lease, tasks.cancel_scope, pending=PendingLimit(frames=1000, bytes=1000))
        tasks.start_soon(burst, writer.emit, 1000)
        for _ in range(50):
            await asyncio.sleep(0)
        assert 1000 <= writer.pending_bytes < 1000 + 100 and writer.pending < 1000  # one frame past the bound at most
        store.gate.set()
        await until_finished(writer)
        tasks.cancel_scope.cancel()
    assert_whole(await events_of(store, sid), sid, 1000)


async def test_a_failure_mid_batch_ends_the_generation_once_without_raising_into_the_producer() -> None:
    store, endings, failures = GatedStore(fail_at_append=2), [], []
    store.gate.clear()
    seen: list[BaseException] = []

    async def produce(emit: Emit) -> None:
        try:
            await emit(text_payload("0"))
            await asyncio.sleep(0.01)
            for i in range(1, 10):
                await emit(text_payload(str(i)))  # queued: the second append, which fails
            store.gate.set()
            for i in range(10, 10_000):
                await emit(text_payload(str(i)))
                await asyncio.sleep(0)
        except BaseException as exc:
            seen.append(exc)
            raise

    generations = Generations(store, on_store_failure=failures.append)
    sid = await generations.start("", produce, endings.append)
    async with asyncio.timeout(HANG):
        while generations:
            await asyncio.sleep(0.01)
    assert endings == ["error"] and failures == ["unavailable"]
    assert [type(exc) for exc in seen] == [asyncio.CancelledError]  # cancelled, never told of the store
    status = await store.status(sid)
    assert status is not None and status.state == "running" and status.last_seq == 1  # no terminate stored
    assert [call for call in store.calls if call[0] == "finish"] == []
    await store.aclose()


async def test_a_stop_with_frames_queued_stores_them_before_the_cancelled_terminate() -> None:
    store = GatedStore()
    store.gate.clear()
    queued = asyncio.Event()

    async def produce(emit: Emit) -> None:
        await emit(text_payload("0"))
        await asyncio.sleep(0.01)
        for i in range(1, 5):
            await emit(text_payload(str(i)))
        queued.set()
        await asyncio.sleep(HANG)  # an upstream that goes quiet until it is cancelled

    generations = Generations(store)
    sid = await generations.start("", produce)
    async with asyncio.timeout(HANG):
        await queued.wait()
        await store.request_stop(sid)  # cancels the append in flight too
        await asyncio.sleep(0)
        store.gate.set()
        while generations:
            await asyncio.sleep(0.01)
    assert_whole(await events_of(store, sid), sid, 5, reason="cancelled")
    await store.aclose()


async def test_redis_going_away_mid_stream_ends_the_generation_once(tmp_path: Path) -> None:
    with run_redis_server(tmp_path) as server:
        store = ReplicaStore(server.url, RedisStoreLimits(lease=0.6, block=0.2, heartbeat=0.1))
        endings: list[str | None] = []
        failures: list[str] = []
        seen: list[BaseException] = []
        started = asyncio.Event()

        async def produce(emit: Emit) -> None:
            try:
                for i in range(100_000):
                    await emit(text_payload(str(i)))
                    if i == 50:
                        started.set()
                    await asyncio.sleep(0.001)
            except BaseException as exc:
                seen.append(exc)
                raise

        generations = Generations(store, on_store_failure=failures.append)
        await generations.start("", produce, endings.append)
        async with asyncio.timeout(HANG):
            await started.wait()
            server.stop()
            while generations:
                await asyncio.sleep(0.01)
        assert endings == ["error"] and failures == ["unavailable"]
        assert [type(exc) for exc in seen] == [asyncio.CancelledError]
        await store.aclose()
