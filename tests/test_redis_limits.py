"""RedisLimits against a real redis-server: two instances stand for two replicas sharing one Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio

from llm_sse_proxy.proxy.config import ConfigError
from llm_sse_proxy.proxy.errors import TooManyRequests, Unauthorized
from llm_sse_proxy.proxy.resume.errors import StoreUnavailable
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.redis_limits import PREFIX, RedisLimits
from tests.conftest import make_config
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def two_replicas(server: RedisServer, errors: list[str] | None = None,
                       **options: Any) -> AsyncIterator[tuple[RedisLimits, RedisLimits]]:
    settings = {"per_minute": 6, "burst": 3, "per_client": 2, "total": 100, **options}
    on_error = (errors if errors is not None else []).append
    async with AsyncExitStack() as stack:
        redis_a = await stack.enter_async_context(SharedRedis(server.url, name="a", on_error=on_error))
        redis_b = await stack.enter_async_context(SharedRedis(server.url, name="b", on_error=on_error))
        a = await stack.enter_async_context(RedisLimits(redis_a, **settings))
        b = await stack.enter_async_context(RedisLimits(redis_b, **settings))
        yield a, b


async def test_one_bucket_is_shared_exactly_by_two_replicas(redis_server: RedisServer) -> None:
    async with two_replicas(redis_server) as (a, b):
        await a.take("key:k")
        await b.take("key:k")
        await a.take("key:k")
        with pytest.raises(TooManyRequests) as refused:
            await b.take("key:k")
        await b.take("key:other")  # another client is not affected
    assert refused.value.retry_after == 10 and refused.value.status == 429  # 6 per minute: one every 10 s


async def test_stream_slots_are_counted_across_replicas_and_given_back(redis_server: RedisServer) -> None:
    async with two_replicas(redis_server) as (a, b):
        leave_a = await a.enter("key:k")
        leave_b = await b.enter("key:k")
        with pytest.raises(TooManyRequests) as refused:
            await a.enter("key:k")
        leave_a()
        leave_a()  # a second call gives nothing back twice
        await a.drained()
        again = await b.enter("key:k")
        leave_b(), again()
        await b.drained()
        assert a.local.open == 0 and b.local.open == 0
    assert refused.value.type == "too_many_streams"
    assert redis_server.command("EXISTS", f"{PREFIX}slots:key:k") == b":0"


async def test_the_slots_of_a_replica_that_died_expire_with_their_lease(redis_server: RedisServer) -> None:
    async with two_replicas(redis_server, lease_ms=400) as (a, b):
        await a.enter("key:k")
        await a.enter("key:k")
        await a.__aexit__(None, None, None)  # "dies": no more renewals, and nothing given back
        with pytest.raises(TooManyRequests):
            await b.enter("key:k")
        with anyio.fail_after(10):
            while True:
                try:
                    await b.enter("key:k")
                    break
                except TooManyRequests:
                    await anyio.sleep(0.05)


async def test_a_renewal_moves_the_lease_of_held_slots_only(redis_server: RedisServer) -> None:
    async with two_replicas(redis_server) as (a, b):
        await a.enter("key:k")
        gone = await a.enter("key:k")
        gone()
        await a.drained()
        (slot,) = a._held
        client = redis_client(redis_server)
        before = await client.zscore(f"{PREFIX}slots:key:k", slot)
        await anyio.sleep(0.01)
        await a.renew()
        scores = dict(await client.zrange(f"{PREFIX}slots:key:k", 0, -1, withscores=True))
        await client.aclose()
    assert list(scores) == [slot.encode()] and scores[slot.encode()] > before


async def test_a_token_is_single_use_across_replicas(redis_server: RedisServer) -> None:
    expires = int(time.time()) + 60
    async with two_replicas(redis_server) as (a, b):
        await a.spend_token("nonce-1", expires)
        with pytest.raises(Unauthorized, match="already used"):
            await b.spend_token("nonce-1", expires)
        await b.spend_token("nonce-2", expires)


async def test_every_key_has_a_ttl(redis_server: RedisServer) -> None:
    async with two_replicas(redis_server) as (a, b):
        await a.take("ip:192.0.2.1")
        await b.enter("key:k")
        await a.spend_token("n", int(time.time()) + 60)
        client = redis_client(redis_server)
        keys = [key async for key in client.scan_iter(f"{PREFIX}*")]
        ttls = [await client.pttl(key) for key in keys]
        await client.aclose()
    assert len(keys) == 3 and all(ttl > 0 for ttl in ttls), dict(zip(keys, ttls))


@pytest.mark.parametrize("failure", ["stopped", "hung"])
async def test_redis_down_or_hung_is_a_prompt_503_and_a_counted_error(redis_server: RedisServer, failure: str) -> None:
    errors: list[str] = []
    async with two_replicas(redis_server, errors) as (a, _):
        await a.take("key:k")  # connected and working
        redis_server.stop() if failure == "stopped" else redis_server.pause()
        try:
            with anyio.fail_after(15):  # "does not hang": the client's bounds make it about 2 s at most
                for call in (a.take("key:k"), a.enter("key:k"), a.spend_token("n", int(time.time()) + 60)):
                    with pytest.raises(StoreUnavailable) as caught:
                        await call
                    assert caught.value.status == 503 and caught.value.headers() == {"retry-after": "1"}
        finally:
            redis_server.resume() if failure == "hung" else None
    assert errors[:3] == ["rate", "gate", "token"]
    assert a.local.open == 0  # the process slot taken before Redis was asked was given back


def redis_client(server: RedisServer) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(server.url)


def test_store_redis_needs_a_url_and_the_url_is_a_secret() -> None:
    with pytest.raises(ConfigError, match=r"resume: .*store: redis needs redis_url"):
        make_config(resume={"store": "redis"})
    config = make_config(resume={"store": "redis", "redis_url": "${REDIS_URL}"},
                         environ={"REDIS_URL": "redis://:hunter2-secret@127.0.0.1:1/0"})
    assert config.resume.redis_url is not None and "hunter2" not in repr(config)
