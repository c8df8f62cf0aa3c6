"""The generation registry on its own: how a generation ends when nobody, the server or the store ends it.

The store here is the real MemoryStore; `FailingStore` wraps it to play a backend that goes down (Redis
unreachable), which is an edge we do not own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from llm_sse_proxy.proxy.relay.relay import Emit
from llm_sse_proxy.proxy.doors.response import Shutdown
from llm_sse_proxy.proxy.resume.errors import StoreUnavailable
from llm_sse_proxy.proxy.resume.generations import Generations
from llm_sse_proxy.proxy.state.streams.memory import MemoryLimits, MemoryStore
from llm_sse_proxy.proxy.state.streams.store import Lease
from llm_sse_proxy.proxy.relay.sse import terminate_payload, text_payload

pytestmark = pytest.mark.anyio
HANG = 10


class Producer:
    """Emits `count` texts, `pause` apart, then a terminate; records whether it was cancelled."""

    def __init__(self, count: int = 1000, pause: float = 0.01) -> None:
        self.count, self.pause = count, pause
        self.cancelled = False

    async def __call__(self, emit: Emit) -> None:
        try:
            for i in range(self.count):
                await emit(text_payload(str(i)))
                await anyio.sleep(self.pause)
            await emit(terminate_payload("stop"))
        except BaseException:
            self.cancelled = True
            raise


class FailingStore(MemoryStore):
    def __init__(self, fail_after: int) -> None:
        super().__init__(MemoryLimits())
        self.left = fail_after

    async def append(self, lease: Lease, first_seq: int, frames: Sequence[bytes]) -> int:
        self.left -= 1
        if self.left < 0:
            raise StoreUnavailable("the store is down")
        return await super().append(lease, first_seq, frames)


async def read_all(store: MemoryStore, sid: str) -> list[dict[str, Any]]:
    async with asyncio.timeout(HANG), aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        return [json.loads(f.split(b"data: ", 1)[1]) async for f in frames]


async def test_a_generation_that_finishes_stores_its_terminate_and_reports_no_ending() -> None:
    store, endings = MemoryStore(), []
    generations = Generations(store)
    sid = await generations.start("", Producer(count=3, pause=0), endings.append)
    events = await read_all(store, sid)
    assert [e.get("text") for e in events[:-1]] == ["0", "1", "2"] and events[-1]["reason"] == "stop"
    async with asyncio.timeout(HANG):
        while generations:
            await asyncio.sleep(0.01)
    assert endings == [None]
    await store.aclose()


async def test_a_store_that_goes_down_cancels_the_producer_and_ends_as_error() -> None:
    store, endings, producer = FailingStore(fail_after=3), [], Producer()
    generations = Generations(store)
    await generations.start("", producer, endings.append)
    async with asyncio.timeout(HANG):
        while not endings:
            await asyncio.sleep(0.01)
    assert endings == ["error"] and producer.cancelled
    await store.aclose()


async def test_shutdown_ends_a_generation_with_a_shutdown_terminate() -> None:
    store, endings, producer = MemoryStore(), [], Producer()
    shutdown = Shutdown(grace=0.1)
    generations = Generations(store, shutdown=shutdown)
    sid = await generations.start("", producer, endings.append)
    shutdown.begin()
    events = await read_all(store, sid)
    assert events[-1]["reason"] == "shutdown" and producer.cancelled
    async with asyncio.timeout(HANG):
        while not endings:
            await asyncio.sleep(0.01)
    assert endings == ["shutdown"]
    await store.aclose()


async def test_aclose_cancels_what_is_left() -> None:
    store, endings, producer = MemoryStore(), [], Producer()
    generations = Generations(store)
    await generations.start("", producer, endings.append)
    await asyncio.sleep(0.05)
    await generations.aclose()
    assert producer.cancelled and endings == ["cancelled"] and not generations
    await store.aclose()


async def test_a_generation_in_one_process_runs_no_task_but_its_own_and_a_stop_still_reaches_it() -> None:
    store, endings, producer = MemoryStore(), [], Producer()
    generations = Generations(store)
    before = len(asyncio.all_tasks())
    sid = await generations.start("", producer, endings.append)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == before + 1  # the stop watch is a callback, not a task per stream
    await store.request_stop(sid)
    events = await read_all(store, sid)
    assert (events[-1]["reason"], events[-1]["code"]) == ("cancelled", "stopped")
    assert producer.cancelled and endings == ["cancelled"]
    await store.aclose()
