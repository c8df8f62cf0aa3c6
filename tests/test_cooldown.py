"""Per-upstream cooldowns (issue 14), now a case of the deployment's circuit breaker (issue 22): an upstream's
429/503 with Retry-After opens its breaker for that long, for every request. The rules as a table; then the
proxy and the real mock upstream, whose recorder counts what reached it, on an injected clock (so nothing
here waits for a window to pass)."""

from __future__ import annotations

import anyio
import pytest

from llm_sse_proxy.proxy.errors import UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from llm_sse_proxy.proxy.routing.route import hold_seconds
from llm_sse_proxy.proxy.state.routing_redis import PREFIX
from tests.conftest import proxy
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import mock_upstream, upstream_config

REPLY = "Hello! This is the mock upstream, streaming a short canned reply one small chunk at a time."


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unavailable(status: int, retry_after: float | None) -> UpstreamUnavailable:
    error = UpstreamUnavailable(f"the upstream answered {status}", retry_after=retry_after)
    error.status = status
    return error


@pytest.mark.parametrize(("error", "expected"), [
    (unavailable(429, 13), 13),
    (unavailable(503, 2.5), 2.5),
    (unavailable(429, 600), 60),  # capped
    (unavailable(429, None), None),  # no Retry-After: the relay's own backoff, nothing across requests
    (unavailable(429, 0), None),
    (unavailable(500, 5), None),  # a 500's Retry-After is about that request, not the upstream's load
    (unavailable(502, 5), None),
    (UpstreamTimeout("slow"), None),
    (UpstreamRejected("no"), None),
])
def test_which_errors_start_a_cooldown_and_for_how_long(error, expected) -> None:
    assert hold_seconds(error, cap=60) == expected
    assert hold_seconds(error, cap=0) is None  # retry.cooldown_max: 0


def models(up, fallback: bool) -> list[dict]:
    primary = up.model("gpt", "gpt+fail=1:429+retry_after=1", fallbacks=["backup"] if fallback else [])
    return [primary, up.model("backup", "backup")]


@pytest.mark.anyio
async def test_within_the_window_the_upstream_is_not_asked_and_the_fallback_answers() -> None:
    clock = FakeClock()
    # retry_after_max below the Retry-After: the first request does not wait for it, but goes on to the fallback.
    config_retry = {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 0.5}
    async with mock_upstream() as up:
        config = upstream_config(models(up, fallback=True), retry=config_retry)
        async with proxy(config, clock=clock) as client:
            first = await ask(client, model="gpt")
            second = await ask(client, model="gpt")
            asked_within = up.recorder.count("gpt+fail=1:429+retry_after=1")
            clock.now += 1.01
            third = await ask(client, model="gpt")
            asked_after = up.recorder.count("gpt+fail=1:429+retry_after=1")
    assert [t["model"] for _, t in (first, second, third)] == ["backup", "backup", "gpt"]
    assert all(text == REPLY for text, _ in (first, second, third))
    assert asked_within == 1  # the second request went straight to the fallback
    assert asked_after == 2  # after the window, gpt is asked again (and answers: the mock failed it once)


@pytest.mark.anyio
async def test_without_a_fallback_the_next_request_gets_503_at_once_with_retry_after() -> None:
    clock = FakeClock()
    retry = {"attempts": 1, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 0.5}
    async with mock_upstream() as up:
        config = upstream_config(models(up, fallback=False), retry=retry)
        async with proxy(config, clock=clock) as client:
            _, first = await ask(client, model="gpt")
            clock.now += 0.4
            second = await client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "model": "gpt"})
            asked = up.recorder.count("gpt+fail=1:429+retry_after=1")
    assert first["error"]["type"] == "upstream_unavailable" and first["error"]["retry_after"] == 1
    assert asked == 1
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert second.json()["error"] == {"type": "deployments_unavailable", "message": (
        "every deployment of gpt is unavailable (circuit breakers open or quotas spent); try again in 1 s")}


@pytest.mark.anyio
async def test_cooldown_max_zero_turns_it_off() -> None:
    retry = {"attempts": 1, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 0.5, "cooldown_max": 0}
    async with mock_upstream() as up:
        async with proxy(upstream_config(models(up, fallback=False), retry=retry), clock=FakeClock()) as client:
            await ask(client, model="gpt")
            text, second = await ask(client, model="gpt")
            asked = up.recorder.count("gpt+fail=1:429+retry_after=1")
    assert asked == 2 and text == REPLY and second["reason"] == "stop"


@pytest.mark.anyio
async def test_replicas_share_a_cooldown_through_redis(redis_server: RedisServer) -> None:
    retry = {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 0.5}
    gpt = "gpt+fail=1:429+retry_after=30"
    async with mock_upstream() as up:
        chain = [up.model("gpt", gpt, fallbacks=["backup"]), up.model("backup", "backup")]
        config = upstream_config(chain, retry=retry, resume={"redis_url": redis_server.url})
        async with proxy(config) as replica_a, proxy(config) as replica_b:
            _, first = await ask(replica_a, model="gpt")
            left_ms = await shared_cooldown(redis_server, "gpt")
            text, second = await ask(replica_b, model="gpt")
            asked = up.recorder.count(gpt)
    assert first["model"] == "backup" and 30_000 < left_ms  # open for 30 s, kept a minute longer
    assert second["model"] == "backup" and text == REPLY and asked == 1  # replica b never asked gpt


async def shared_cooldown(server: RedisServer, model: str) -> int:
    """The breaker's key's milliseconds left in Redis, once the replica's write (a task of its own) has landed."""
    with anyio.fail_after(5):
        while server.command("HGET", f"{PREFIX}{model}/0:state", "open_until") in (b"$-1", b""):
            await anyio.sleep(0.01)
    return int(server.command("PTTL", f"{PREFIX}{model}/0:state")[1:])


