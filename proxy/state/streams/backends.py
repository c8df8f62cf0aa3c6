"""Which `StreamStore` a config asks for. A backend is a function from the config (and the process's one
Redis client, None without `resume.redis_url`) to an async context manager that opens the store and
closes it (the app's lifespan holds it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from llm_sse_proxy.proxy.config import ResumeConfig
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.streams.memory import MemoryLimits, MemoryStore
from llm_sse_proxy.proxy.state.streams.redis_store import open_redis_store
from llm_sse_proxy.proxy.state.streams.store import StreamStore

OpenStore = Callable[[ResumeConfig, SharedRedis | None], AbstractAsyncContextManager[StreamStore]]


@asynccontextmanager
async def open_memory_store(config: ResumeConfig, redis: SharedRedis | None) -> AsyncIterator[StreamStore]:
    store = MemoryStore(MemoryLimits(
        grace=config.grace,
        retention=config.retention,
        max_events=config.max_events_per_stream,
        max_bytes=config.max_bytes_per_stream,
        budget=config.memory_budget,
    ))
    try:
        yield store
    finally:
        await store.aclose()


BACKENDS: dict[str, OpenStore] = {"memory": open_memory_store, "redis": open_redis_store}
