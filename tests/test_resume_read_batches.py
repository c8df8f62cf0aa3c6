"""The memory store's `read_batches` (issue 27): the frames of `read`, in order, each once, grouped by what was
ready at each step, so the reader sends them in one write; and the cap still keeps what a reader holds."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from llm_sse_proxy.proxy.state.streams.memory import MemoryLimits, MemoryStore
from tests.test_resume_store import HANG, collect, finished, frame, started

pytestmark = pytest.mark.anyio


async def batches_of(store: MemoryStore, sid: str, after: int) -> list[list[bytes]]:
    async with asyncio.timeout(HANG), aclosing(store.read_batches(sid, after)) as batches:
        return [list(batch) async for batch in batches]


@pytest.mark.parametrize(("count", "after"), [(1, 0), (5, 0), (5, 3), (5, 6), (300, 17)])
async def test_a_finished_stream_is_one_batch_of_the_frames_read_gives(count: int, after: int) -> None:
    store = MemoryStore()
    sid, _ = await finished(store, count)
    got = await batches_of(store, sid, after)
    assert [f for batch in got for f in batch] == await collect(store, sid, after)
    assert len(got) == (1 if after < count + 1 else 0)
    await store.aclose()


async def test_a_live_reader_gets_what_each_append_added_then_ends_after_the_terminal() -> None:
    store = MemoryStore()
    sid, lease = await started(store, 2)
    async with asyncio.timeout(HANG), aclosing(store.read_batches(sid, 0)) as batches:
        assert list(await batches.__anext__()) == [frame(sid, 1), frame(sid, 2)]
        waiting = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0)
        assert not waiting.done()  # at the head: it waits for the next append
        await store.append(lease, 3, [frame(sid, 3), frame(sid, 4)])
        await store.append(lease, 5, [frame(sid, 5)])  # before the reader runs: the same batch
        assert list(await waiting) == [frame(sid, s) for s in (3, 4, 5)]
        await store.finish(lease, 6, frame(sid, 6), "stop")
        assert [list(batch) async for batch in batches] == [[frame(sid, 6)]]  # a tuple, once finished
    await store.aclose()


async def test_the_cap_keeps_the_batch_a_reader_has_not_sent() -> None:
    store = MemoryStore(MemoryLimits(max_events=10))
    sid, lease = await started(store, 1)
    async with aclosing(store.read_batches(sid, 0)) as batches:
        got = list(await batches.__anext__())  # attached, then slow
        await store.append(lease, 2, [frame(sid, s) for s in range(2, 31)])
        await store.finish(lease, 31, frame(sid, 31), "stop")
        got += [f async for batch in batches for f in batch]
    assert got == [frame(sid, s) for s in range(1, 32)]
    await store.aclose()
