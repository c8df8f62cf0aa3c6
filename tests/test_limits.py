"""Limits: a clear, immediate error for whoever breaks one, and nobody else affected."""

from __future__ import annotations

import anyio
import pytest

from llm_sse_proxy.proxy.config import ConfigError
from llm_sse_proxy.proxy.deltas import ChatRequest, Message
from llm_sse_proxy.proxy.errors import Overloaded, PayloadTooLarge, TooManyRequests
from llm_sse_proxy.proxy.admission.limits import RateLimiter, StreamGates, cap_max_tokens, check_size
from tests.conftest import (
    LOAD_TEST_LIMITS,
    assert_one_terminate_last,
    chat_body,
    make_config,
    payloads,
    proxy,
    read_stream,
)
from tests.test_auth import ENV, KEY, OTHER_KEY

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(TooManyRequests) as caught:
        limiter.take("a")
    assert caught.value.retry_after == 1 and caught.value.headers() == {"retry-after": "1"}
    limiter.take("b")  # another client is not affected
    clock.now += 1.0
    limiter.take("a")
    with pytest.raises(TooManyRequests):
        limiter.take("a")
    clock.now += 100
    for _ in range(3):  # refilled, but never above the burst
        limiter.take("a")
    with pytest.raises(TooManyRequests):
        limiter.take("a")


def test_retry_after_says_when_the_next_request_fits() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)
    limiter.take("a")
    with pytest.raises(TooManyRequests) as caught:
        limiter.take("a")
    assert caught.value.retry_after == 10


def test_the_bucket_table_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr("llm_sse_proxy.proxy.admission.limits.MAX_TRACKED_CLIENTS", 5)
    limiter = RateLimiter(per_minute=60, burst=1, clock=Clock())
    for i in range(50):
        limiter.take(f"ip:{i}")
    assert len(limiter._buckets) == 5


def test_stream_gates_per_client_and_in_total() -> None:
    gates = StreamGates(per_client=2, total=3)
    a1, a2 = gates.enter("a"), gates.enter("a")
    with pytest.raises(TooManyRequests) as caught:
        gates.enter("a")
    assert caught.value.status == 429 and caught.value.type == "too_many_streams"
    b1 = gates.enter("b")
    with pytest.raises(Overloaded) as full:
        gates.enter("c")
    assert full.value.status == 503 and full.value.headers() == {"retry-after": "1"}
    a1()
    a1()  # a second call gives nothing back twice
    assert gates.open == 2
    gates.enter("c")
    a2(), b1()
    assert gates.open == 1 and set(gates._by_client) == {"c"}


def request(*contents: str, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(messages=tuple(Message("user", c) for c in contents), max_tokens=max_tokens)


@pytest.mark.parametrize(("requested", "cap", "sent"), [
    (None, None, None), (50, None, 50), (None, 100, 100), (50, 100, 50), (100, 100, 100), (5000, 100, 100),
])
def test_max_tokens_is_clamped_to_the_cap(requested, cap, sent) -> None:
    assert cap_max_tokens(request("hi", max_tokens=requested), cap).max_tokens == sent


@pytest.mark.parametrize(("contents", "error"), [
    (["a"] * 3, None), (["a"] * 4, "more than 3 messages"), (["abcde", "abcde"], None), (["abcde", "abcdef"],
                                                                                        "more than 10 characters"),
])
def test_message_count_and_size(contents, error) -> None:
    limits = make_config(limits={"max_messages": 3, "max_chars": 10}).limits
    if error is None:
        check_size(request(*contents), limits)
    else:
        with pytest.raises(PayloadTooLarge, match=error):
            check_size(request(*contents), limits)


@pytest.mark.parametrize(("limits", "message"), [
    ({"requests_per_minute": 0}, "limits.requests_per_minute:"),
    ({"burst": 0}, "limits.burst:"),
    ({"max_streams": "many"}, "limits.max_streams:"),
    ({"streams": 3}, "limits.streams: unknown key; did you mean 'max_streams'?"),
])
def test_bad_limits_config_names_the_field(limits: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_config(limits=limits)


def test_bad_model_cap_names_the_model() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\] \(m\)\.max_tokens_cap"):
        make_config([{"name": "m", "adapter": "mock", "max_tokens_cap": 0}])


async def test_over_the_request_rate_gets_429_with_retry_after() -> None:
    config = make_config(limits={"requests_per_minute": 6, "burst": 2})
    async with proxy(config) as client:
        ok = [(await read_stream(client, "POST", "/chat", json=chat_body()))[0].status_code for _ in range(2)]
        refused = await client.post("/chat", json=chat_body())
        other_address = await client.post("/chat", json=chat_body(), headers={"x-forwarded-for": "192.0.2.7"})
    assert ok == [200, 200]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    assert refused.json()["error"]["type"] == "rate_limited"
    assert other_address.status_code == 200  # uvicorn takes the client address from a trusted local proxy


async def test_the_rate_is_per_key_when_keys_are_on() -> None:
    config = make_config(auth={"keys": ["${PROXY_KEYS}"]}, environ=ENV, limits={"requests_per_minute": 1, "burst": 1})
    async with proxy(config) as client:
        first = await client.post("/token", headers={"authorization": f"Bearer {KEY}"})
        second = await client.post("/token", headers={"authorization": f"Bearer {KEY}"})
        other = await client.post("/token", headers={"authorization": f"Bearer {OTHER_KEY}"})
        stream, _ = await read_stream(client, "GET", "/stream", params={"token": first.json()["token"]})
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)
    assert stream.status_code == 200  # the token was paid for when it was issued


@pytest.mark.parametrize(("method", "kwargs"), [
    ("POST", {"json": {"messages": [{"role": "user", "content": "x"}] * 4}}),
    ("POST", {"json": chat_body("x" * 101)}),
    ("GET", {"params": {"prompt": "x" * 101}}),
    ("GET", {"params": {"prompt": "x" * 60, "system": "y" * 60}}),
])
async def test_too_many_messages_or_characters_get_413(method: str, kwargs: dict) -> None:
    async with proxy(make_config(limits={"max_messages": 3, "max_chars": 100})) as client:
        path = "/chat" if method == "POST" else "/stream"
        response = await client.request(method, path, **kwargs)
    assert response.status_code == 413 and response.json()["error"]["type"] == "payload_too_large"


async def test_max_tokens_is_capped_per_model_even_when_absent() -> None:
    models = [{"name": "capped", "adapter": "mock", "reply": "abcdefghij", "chunk_chars": 1, "chunk_delay_ms": 0,
               "max_tokens_cap": 3},
              {"name": "free", "adapter": "mock", "reply": "abcdefghij", "chunk_chars": 1, "chunk_delay_ms": 0}]
    async with proxy(make_config(models)) as client:
        texts = {}
        for name, extra in (("capped", {"max_tokens": 1000}), ("capped", {}), ("capped", {"max_tokens": 2}),
                            ("free", {})):
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(model=name, **extra))
            items = payloads(parsed)
            texts[(name, str(extra))] = ("".join(p.get("text", "") for p in items), items[-1]["reason"])
    assert list(texts.values()) == [("abc", "length"), ("abc", "length"), ("ab", "length"), ("abcdefghij", "stop")]


SLOW = {"name": "slow", "adapter": "mock", "reply": "one two three", "chunk_chars": 4, "chunk_delay_ms": 300}


async def hold_streams(client, count: int, results: list, opened: anyio.Event, **kwargs) -> None:
    """Open `count` slow streams; set `opened` once all have their headers; keep their payloads."""
    started = 0

    async def one() -> None:
        nonlocal started
        async with client.stream("POST", "/chat", json=chat_body(), **kwargs) as response:
            assert response.status_code == 200
            started += 1
            if started == count:
                opened.set()
            results.append(payloads_of(await response.aread()))

    async with anyio.create_task_group() as tasks:
        for _ in range(count):
            tasks.start_soon(one)


def payloads_of(raw: bytes) -> list[dict]:
    from tests.sse_parse import parse_stream

    return payloads(parse_stream(raw))


@pytest.mark.parametrize(("limits", "status", "error_type"), [
    ({"streams_per_client": 3}, 429, "too_many_streams"),
    ({**LOAD_TEST_LIMITS, "max_streams": 3}, 503, "overloaded"),
])
async def test_streams_past_a_limit_are_refused_at_once_and_the_open_ones_finish(limits, status, error_type) -> None:
    async with proxy(make_config([SLOW], limits=limits)) as client:
        results: list[list[dict]] = []
        opened = anyio.Event()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(hold_streams, client, 3, results, opened)
                await opened.wait()
                refused = [await client.post("/chat", json=chat_body()) for _ in range(5)]
        after = await client.post("/chat", json=chat_body())
        await after.aclose()
    assert [r.status_code for r in refused] == [status] * 5
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["type"] == error_type for r in refused)
    for items in results:
        assert "".join(p.get("text", "") for p in items) == "one two three"
        assert assert_one_terminate_last(items)["reason"] == "stop"
    assert len(results) == 3 and after.status_code == 200  # the slots came back
