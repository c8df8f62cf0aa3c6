"""The `StreamStore` contract, run against every backend (a Redis one joins `BACKENDS`).

Small limits (grace 0.3 s) keep it quick; waits are bounded by generous timeouts that only prove
"does not hang".
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import pytest

from llm_sse_proxy.proxy.resume.errors import (
    CursorAhead, Fenced, ResumeGap, StoreUnavailable, StreamExists, StreamNotFound,
)
from llm_sse_proxy.proxy.resume.ids import new_sid
from llm_sse_proxy.proxy.state.streams.memory import MemoryLimits, MemoryStore
from llm_sse_proxy.proxy.state.streams.store import StreamMeta, StreamStore

pytestmark = pytest.mark.anyio
HANG = 10  # seconds: far beyond any expected wait; only proves "does not hang"

StoreFactory = Callable[..., StreamStore]


def memory_store(**limits: Any) -> StreamStore:
    return MemoryStore(MemoryLimits(**limits))


BACKENDS: dict[str, StoreFactory] = {"memory": memory_store}


@pytest.fixture(params=sorted(BACKENDS))
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    made: list[StreamStore] = []

    def make(**limits: Any) -> StreamStore:
        limits.setdefault("grace", 30.0)
        made.append(store := BACKENDS[request.param](**limits))
        return store

    yield make
    for store in made:
        await store.aclose()


def frame(sid: str, seq: int) -> bytes:
    return b"id: %s:%d\ndata: {\"text\":\"%d\"}\n\n" % (sid.encode(), seq, seq)


async def collect(store: StreamStore, sid: str, after: int) -> list[bytes]:
    async with asyncio.timeout(HANG), aclosing(store.read(sid, after)) as frames:  # type: ignore[type-var]
        return [f async for f in frames]


async def started(store: StreamStore, count: int = 0, owner: str = "me") -> tuple[str, Any]:
    sid = new_sid()
    lease = await store.create(sid, StreamMeta(owner))
    if count:
        await store.append(lease, 1, [frame(sid, s) for s in range(1, count + 1)])
    return sid, lease


async def finished(store: StreamStore, count: int) -> tuple[str, Any]:
    sid, lease = await started(store, count)
    await store.finish(lease, count + 1, frame(sid, count + 1), "stop")
    return sid, lease


@pytest.mark.parametrize("after", [0, 1, 4, 5])
async def test_replay_of_a_finished_stream_is_exactly_the_frames_after_the_cursor(make_store: StoreFactory,
                                                                                  after: int) -> None:
    store = make_store()
    sid, _ = await finished(store, 5)
    assert await collect(store, sid, after) == [frame(sid, s) for s in range(after + 1, 7)]


async def test_a_cursor_at_the_terminal_reads_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    sid, _ = await finished(store, 3)
    assert await collect(store, sid, 4) == []
    status = await store.status(sid)
    assert status is not None and (status.state, status.last_seq, status.reason) == ("finished", 4, "stop")


async def test_a_reader_at_the_head_waits_for_the_next_append_then_ends_after_the_terminal(
        make_store: StoreFactory) -> None:
    store = make_store()
    sid, lease = await started(store, 2)
    reader = asyncio.create_task(collect(store, sid, 2))
    await asyncio.sleep(0.05)
    assert not reader.done()
    await store.append(lease, 3, [frame(sid, 3)])
    await store.finish(lease, 4, frame(sid, 4), "stop")
    assert await reader == [frame(sid, 3), frame(sid, 4)]


async def test_concurrent_readers_each_get_every_frame_once_in_order(make_store: StoreFactory) -> None:
    store = make_store()
    sid, lease = await started(store, 1)
    readers = [asyncio.create_task(collect(store, sid, 0)) for _ in range(5)]
    for seq in range(2, 40):
        await store.append(lease, seq, [frame(sid, seq)])
        if seq % 7 == 0:
            await asyncio.sleep(0)
    await store.finish(lease, 40, frame(sid, 40), "stop")
    results = await asyncio.gather(*readers)
    assert all(r == [frame(sid, s) for s in range(1, 41)] for r in results)


async def test_a_second_create_is_refused(make_store: StoreFactory) -> None:
    store = make_store()
    sid, _ = await started(store)
    with pytest.raises(StreamExists):
        await store.create(sid, StreamMeta("me"))


async def test_a_retried_append_is_a_no_op_and_a_gap_is_a_bug(make_store: StoreFactory) -> None:
    store = make_store()
    sid, lease = await started(store, 3)
    assert await store.append(lease, 2, [frame(sid, 2), frame(sid, 3)]) == 3
    with pytest.raises(ValueError):
        await store.append(lease, 5, [frame(sid, 5)])
    assert await collect_running(store, sid, 3) == [frame(sid, s) for s in (1, 2, 3)]


async def test_a_retried_batch_with_frames_past_the_last_stores_none_of_them(make_store: StoreFactory) -> None:
    # The writer sends a batch cancelled in flight again with what it queued since (proxy/resume/writer.py):
    # the store answers its last seq, and the frames past it come in the next append, not from this one.
    store = make_store()
    sid, lease = await started(store, 2)
    live = asyncio.create_task(collect(store, sid, 0))  # a reader attached meanwhile
    await asyncio.sleep(0.05)
    assert await store.append(lease, 1, [frame(sid, 1), frame(sid, 2), frame(sid, 3)]) == 2
    terminal = b"id: %s:3\ndata: {}\n\n" % sid.encode()
    await store.finish(lease, 3, terminal, "stop")
    assert await live == await collect(store, sid, 0) == [frame(sid, 1), frame(sid, 2), terminal]


async def collect_running(store: StreamStore, sid: str, count: int) -> list[bytes]:
    out = []
    async with asyncio.timeout(HANG), aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        async for f in frames:
            out.append(f)
            if len(out) == count:
                break
    return out


async def test_the_lease_fences_a_stale_writer_and_a_finished_stream(make_store: StoreFactory) -> None:
    store = make_store()
    sid, lease = await started(store, 1)
    stale = type(lease)(sid, "not-the-token")
    with pytest.raises(Fenced):
        await store.append(stale, 2, [frame(sid, 2)])
    with pytest.raises(Fenced):
        await store.finish(stale, 2, frame(sid, 2), "stop")
    await store.finish(lease, 2, frame(sid, 2), "stop")
    await store.finish(lease, 2, frame(sid, 2), "stop")  # a retried finish
    with pytest.raises(Fenced):
        await store.append(lease, 3, [frame(sid, 3)])


async def test_unknown_ahead_and_trimmed_cursors(make_store: StoreFactory) -> None:
    store = make_store(max_events=10)
    with pytest.raises(StreamNotFound):
        await collect(store, new_sid(), 0)
    sid, lease = await started(store, 30)
    status = await store.status(sid)
    assert status is not None and status.first_seq > 1 and status.last_seq == 30
    with pytest.raises(CursorAhead):
        await collect(store, sid, 31)
    with pytest.raises(ResumeGap):
        await collect(store, sid, 0)
    await store.finish(lease, 31, frame(sid, 31), "stop")
    assert await collect(store, sid, 29) == [frame(sid, 30), frame(sid, 31)]


async def test_the_cap_keeps_the_frames_an_attached_reader_has_not_got(make_store: StoreFactory) -> None:
    store = make_store(max_events=10)
    sid, lease = await started(store, 1)
    async with aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        got = [await frames.__anext__()]  # attached, then slow
        await store.append(lease, 2, [frame(sid, s) for s in range(2, 31)])
        await store.finish(lease, 31, frame(sid, 31), "stop")
        got += [f async for f in frames]
    assert got == [frame(sid, s) for s in range(1, 32)]
    status = await store.status(sid)  # the next append trims what the reader has sent meanwhile
    assert status is not None and status.last_seq == 31


@pytest.mark.parametrize("cap", ["events", "bytes"])
async def test_a_finished_stream_keeps_no_more_than_its_cap_once_a_stalled_reader_left(
        make_store: StoreFactory, cap: str) -> None:
    # Issue 26 item 3: a reader that stalls until the answer is done pinned every frame, and nothing
    # trimmed a finished stream: it kept them all for its retention.
    one = len(frame("x" * 22, 10))
    store = make_store(**({"max_events": 10} if cap == "events" else {"max_bytes": one * 10}))
    sid, lease = await started(store, 1)
    async with aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        await frames.__anext__()  # attached, then stalled until the end
        await store.append(lease, 2, [frame(sid, s) for s in range(2, 40)])
        await store.finish(lease, 40, frame(sid, 40), "stop")
    status = await store.status(sid)  # the reader left (its send timeout ended it)
    assert status is not None and status.state == "finished" and status.last_seq == 40
    assert status.last_seq - status.first_seq + 1 <= 10
    with pytest.raises(ResumeGap):  # a late cursor gets resume_gap, as on a running stream
        await collect(store, sid, 1)
    assert (await collect(store, sid, 39)) == [frame(sid, 40)]


async def test_the_byte_cap_trims_the_oldest_frames(make_store: StoreFactory) -> None:
    one = len(frame("x" * 22, 10))
    store = make_store(max_bytes=one * 10)
    sid, _ = await started(store, 50)
    status = await store.status(sid)
    assert status is not None and status.first_seq > 40 and status.last_seq == 50


async def test_a_stream_with_no_reader_is_abandoned_after_grace(make_store: StoreFactory) -> None:
    store = make_store(grace=0.3)
    sid, lease = await started(store, 1)
    async with asyncio.timeout(HANG):
        assert await store.wait_stop(lease) == "abandoned"


async def test_a_present_reader_holds_off_abandonment_and_its_leaving_starts_the_clock(
        make_store: StoreFactory) -> None:
    store = make_store(grace=0.3)
    sid, lease = await started(store, 1)
    waiting = asyncio.create_task(store.wait_stop(lease))
    reader = asyncio.create_task(collect(store, sid, 0))
    await asyncio.sleep(0.8)  # well past grace: the reader is present, so nothing may happen
    assert not waiting.done()
    reader.cancel()
    async with asyncio.timeout(HANG):
        assert await waiting == "abandoned"


async def test_stop_wakes_the_owner_and_is_idempotent(make_store: StoreFactory) -> None:
    store = make_store()
    sid, lease = await started(store, 1)
    waiting = asyncio.create_task(store.wait_stop(lease))
    status = await store.request_stop(sid)
    assert status.stop_requested and status.state == "running"
    async with asyncio.timeout(HANG):
        assert await waiting == "stopped"
    await store.request_stop(sid)
    await store.finish(lease, 2, frame(sid, 2), "cancelled")
    assert (await store.request_stop(sid)).state == "finished"
    with pytest.raises(StreamNotFound):
        await store.request_stop(new_sid())


async def test_a_finished_stream_is_forgotten_after_retention(make_store: StoreFactory) -> None:
    store = make_store(retention=0.2)
    sid, _ = await finished(store, 2)
    assert await store.status(sid) is not None
    async with asyncio.timeout(HANG):
        while await store.status(sid) is not None:
            await asyncio.sleep(0.05)
    with pytest.raises(StreamNotFound):
        await collect(store, sid, 0)


async def test_a_label_names_its_newest_stream_while_that_is_kept(make_store: StoreFactory) -> None:
    store = make_store(retention=0.2)
    first = await store.create(new_sid(), StreamMeta("me", label="chat-a"))
    second = await store.create(new_sid(), StreamMeta("me", label="chat-a"))
    await store.create(new_sid(), StreamMeta("me"))  # no label: nothing named
    assert await store.labelled("chat-a") == second.sid and await store.labelled("chat-b") is None
    await store.finish(first, 1, frame(first.sid, 1), "stop")  # an older stream ending leaves the newest named
    await store.finish(second, 1, frame(second.sid, 1), "stop")
    assert await store.labelled("chat-a") == second.sid  # retained: still found
    async with asyncio.timeout(HANG):
        while await store.status(second.sid) is not None:
            await asyncio.sleep(0.05)
    named = await store.labelled("chat-a")
    assert named is None or await store.status(named) is None


async def test_owner_is_kept() -> None:
    store = MemoryStore()
    sid, _ = await started(store, owner="fp-1")
    status = await store.status(sid)
    assert status is not None and status.owner == "fp-1"
    await store.aclose()


async def test_memory_budget_drops_finished_streams_first_then_refuses() -> None:
    size = len(frame("x" * 22, 1)) * 11
    store = MemoryStore(MemoryLimits(budget=size))
    old, _ = await finished(store, 10)  # 11 frames: the whole budget
    running, _ = await started(store, 30)  # at the budget: the finished stream goes to make room
    assert await store.status(old) is None and await store.status(running) is not None
    with pytest.raises(StoreUnavailable):  # only a running stream is left: it is never dropped
        await store.create(new_sid(), StreamMeta("me"))
    assert await store.status(running) is not None
    await store.aclose()
    assert store.size == 0


async def test_a_finished_stream_costs_the_garbage_collector_one_object_and_no_timer() -> None:
    # Issue 27: a store holding its retention's worth of finished streams (100,000) made every full
    # collection walk about eleven objects per stream (frames list, timer, meta, sets...), a pause of
    # a third of a second each. Finished, a stream is one tracked object; one timer expires them all.
    store = MemoryStore(MemoryLimits(retention=3600))
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(1000):
        await finished(store, 2)
    await asyncio.sleep(0)  # the loop's turn: it drops the cancelled grace timers (uvloop does at once)
    gc.collect()  # tuples of bytes are untracked once the collector has seen them
    grown = len(gc.get_objects()) - before
    assert grown < 1300, grown
    loop = asyncio.get_running_loop()
    assert sum(1 for handle in getattr(loop, "_scheduled", ()) if not handle.cancelled()) <= 1
    await store.aclose()


async def test_finished_streams_expire_in_order_on_one_timer(make_store: StoreFactory) -> None:
    store = make_store(retention=0.3)
    first, _ = await finished(store, 1)
    await asyncio.sleep(0.1)
    second, _ = await finished(store, 1)
    async with asyncio.timeout(HANG):
        while await store.status(first) is not None:
            await asyncio.sleep(0.02)
    async with asyncio.timeout(HANG):
        while await store.status(second) is not None:
            await asyncio.sleep(0.02)
