"""Many deployments behind one model (issue 22), through uvicorn and real loopback mock upstreams: weights,
least_busy, latency, the breaker's three states, rpm in a burst, and where a retry goes.

The deployment that answered is read from the terminate of a client that asked for named events; the
mock's recorder says what each upstream saw. Breaker and latency ages run on an injected clock."""

from __future__ import annotations

import re

from collections import Counter
from typing import Any

import anyio
import pytest

from tests.conftest import LOAD_TEST_LIMITS, assert_one_terminate_last, chat_body, payloads, proxy, read_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

FAST_MOCK = {"adapter": "mock", "chunk_delay_ms": 0, "chunk_chars": 64, "reply": "hi there"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ask(client: Any, model: str = "chat", content: str = "hi") -> tuple[str, dict[str, Any]]:
    """The text and terminate of one stream, asked with a named event so that the terminate names the deployment."""
    response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(content, model=model, events=["reasoning"]))
    assert response.status_code == 200, response.status_code
    items = payloads(parsed)
    terminate = assert_one_terminate_last(items)
    return "".join(p.get("text", "") for p in items[:-1]), terminate


async def ask_many(client: Any, count: int, concurrency: int = 20, model: str = "chat") -> list[dict[str, Any]]:
    terminates: list[dict[str, Any]] = []
    limiter = anyio.Semaphore(concurrency)

    async def one() -> None:
        async with limiter:
            terminates.append((await ask(client, model))[1])

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
    return terminates


async def test_weights_split_the_traffic_within_a_tolerance() -> None:
    chat = {"name": "chat", "deployments": [{**FAST_MOCK, "name": "light"}, {**FAST_MOCK, "name": "heavy", "weight": 3}]}
    async with proxy(upstream_config([chat], limits=LOAD_TEST_LIMITS, resume={"enabled": False})) as client:
        terminates = await ask_many(client, 400)
    split = Counter(t["deployment"] for t in terminates)
    assert all(t["reason"] == "stop" and t["model"] == "chat" for t in terminates)
    # 100 and 300 expected; a binomial's standard deviation here is under 9: five of them either way.
    assert abs(split["light"] - 100) <= 45 and split["light"] + split["heavy"] == 400, split


async def test_a_model_without_deployments_names_none_to_the_client() -> None:
    async with proxy(upstream_config([{"name": "chat", **FAST_MOCK}])) as client:
        _, terminate = await ask(client)
    assert "deployment" not in terminate and terminate["reason"] == "stop"


async def test_least_busy_sends_the_next_streams_away_from_a_long_one() -> None:
    slow = {"adapter": "mock", "echo": True, "chunk_chars": 1, "chunk_delay_ms": 20}
    chat = {"name": "chat", "strategy": "least_busy", "deployments": [{**slow, "name": "a"}, {**slow, "name": "b"}]}
    async with proxy(upstream_config([chat], resume={"enabled": False})) as client:
        body = chat_body("x" * 400, model="chat", events=["reasoning"])  # about 8 s of text, one character at a time
        async with client.stream("POST", "/chat", json=body) as long:
            lines = long.aiter_lines()  # held: a dropped iterator would close the stream
            first = await lines.__anext__()  # it has started: its deployment has one stream in flight
            shorts = [(await ask(client, content="ok"))[1]["deployment"] for _ in range(8)]
            await lines.aclose()
    assert first.startswith("id:")
    assert len(set(shorts)) == 1, shorts  # every short one went to the idle deployment


async def test_latency_moves_traffic_off_a_slow_deployment_and_back_when_it_recovers() -> None:
    clock, slowing = Clock(), {}
    async with mock_upstream() as fast, mock_upstream(options=slowing) as other:
        chat = {"name": "chat", "strategy": "latency", "deployments": [fast.model("fast", "m"), other.model("other", "m")]}
        config = upstream_config([chat], limits=LOAD_TEST_LIMITS)
        async with proxy(config, clock=clock) as client:
            before = Counter([(await ask(client))[1]["deployment"] for _ in range(20)])
            slowing["first_delay_ms"] = "300"
            slow = Counter([(await ask(client))[1]["deployment"] for _ in range(20)])
            del slowing["first_delay_ms"]
            after = Counter()
            for _ in range(40):
                clock.now += 10  # the slow estimate fades with its age; the fast one is measured each time
                after[(await ask(client))[1]["deployment"]] += 1
    assert before["other"] >= 1 and before["fast"] >= 1, before
    assert slow["other"] <= 2, slow  # one slow first token is enough to move the traffic
    assert after["other"] >= 3, after  # probed again, found fast, and back in rotation


def two_deployments(up: Any, east: str, west: str = "m+key=west", **model: Any) -> dict[str, Any]:
    return {"name": "chat", "deployments": [up.model("east", east), up.model("west", west)], **model}


async def test_a_retry_goes_to_the_other_deployment_at_once_then_the_breaker_opens_half_opens_and_closes() -> None:
    clock, east = Clock(), "m+key=east+fail=3:503"
    retry = {"attempts": 3, "backoff_initial": 5, "backoff_max": 5}  # a backoff would show: none is waited
    async with mock_upstream() as up:
        chat = two_deployments(up, east, strategy="ordered", breaker={"failures": 2, "open_for": 30})
        async with proxy(upstream_config([chat], retry=retry), clock=clock) as client:
            with anyio.fail_after(4):  # well under the 5 s backoff
                answered = [(await ask(client))[1]["deployment"] for _ in range(3)]  # 2 failures open it
            asked_while_open = up.recorder.count(east)
            gauge_open = breaker_gauges((await client.get("/metrics")).text)
            clock.now += 30  # half-open: one probe, which fails (the mock's third 503): open again
            probe = (await ask(client))[1]["deployment"]
            asked_by_probe = up.recorder.count(east)
            still_open = (await ask(client))[1]["deployment"]
            clock.now += 30  # half-open again: this probe succeeds and closes it
            closing = (await ask(client))[1]["deployment"]
            closed = (await ask(client))[1]["deployment"]
            gauge_closed = breaker_gauges((await client.get("/metrics")).text)
    assert answered == ["west", "west", "west"] and asked_while_open == 2
    assert gauge_open == {"east": "1.0", "west": "0.0"} and gauge_closed == {"east": "0.0", "west": "0.0"}
    assert probe == "west" and asked_by_probe == 3 and still_open == "west"
    assert closing == "east" and closed == "east" and up.recorder.count(east) == 5


def breaker_gauges(exposition: str) -> dict[str, str]:
    """`llm_proxy_breaker_open` of model `chat`, by deployment."""
    return dict(re.findall(r'^llm_proxy_breaker_open\{deployment="(\w+)",model="chat"\} (\S+)$', exposition, re.M))


async def test_every_deployment_open_is_a_503_at_once_in_each_door() -> None:
    clock = Clock()
    async with mock_upstream() as up:
        chat = two_deployments(up, "m+key=east+fail=9:503", "m+key=west+fail=9:503",
                               breaker={"failures": 1, "open_for": 20})
        async with proxy(upstream_config([chat], retry={"attempts": 2, "backoff_initial": 0.01}), clock=clock) as client:
            _, first = await ask(client)
            asked = up.recorder.count()
            chat_door = await client.post("/chat", json=chat_body(model="chat"))
            v1 = await client.post("/v1/chat/completions", json=chat_body(model="chat", stream=True))
    assert first["reason"] == "error" and first["error"]["type"] == "upstream_unavailable" and asked == 2
    for response in (chat_door, v1):
        assert response.status_code == 503 and response.headers["retry-after"] == "20"
    assert chat_door.json()["error"]["type"] == "deployments_unavailable"
    v1_error = v1.json()["error"]  # the door's own shape: the type, or OpenAI's `code`
    assert "deployments_unavailable" in (v1_error.get("type"), v1_error.get("code"))
    assert up.recorder.count() == 2  # neither door's request reached an upstream


async def test_rpm_keeps_a_deployment_from_ever_answering_429_in_a_burst() -> None:
    async with mock_upstream() as up:
        chat = two_deployments(up, "m+key=east+rpm=5", strategy="ordered")
        chat["deployments"][0]["rpm"] = 5
        async with proxy(upstream_config([chat], limits=LOAD_TEST_LIMITS), clock=Clock()) as client:
            terminates = await ask_many(client, 30)
    east = [a for a in up.recorder.attempts if a.key == "east"]
    assert all(t["reason"] == "stop" for t in terminates)
    assert len(east) == 5 and all(a.status == 200 for a in east)  # exactly its quota, and never a 429
    assert Counter(t["deployment"] for t in terminates) == {"east": 5, "west": 25}


async def test_without_the_quota_the_burst_meets_429s() -> None:
    """The control: the same burst, no `rpm` configured, and the provider answers 429."""
    async with mock_upstream() as up:
        chat = two_deployments(up, "m+key=east+rpm=5", strategy="ordered")
        async with proxy(upstream_config([chat], limits=LOAD_TEST_LIMITS), clock=Clock()) as client:
            await ask_many(client, 30, concurrency=10)
    assert any(a.status == 429 for a in up.recorder.attempts if a.key == "east")


async def test_the_access_line_and_metrics_name_the_deployment(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    chat = {"name": "chat", "strategy": "ordered", "deployments": [{**FAST_MOCK, "name": "east"}, FAST_MOCK]}
    async with proxy(upstream_config([chat, {"name": "solo", **FAST_MOCK}], resume={"enabled": False})) as client:
        await ask(client)
        await ask(client, model="solo")
        metrics = (await client.get("/metrics")).text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]
    assert [(line["model"], line["deployment"]) for line in lines] == [("chat", "east"), ("solo", "0")]
    assert 'llm_proxy_deployment_streams_total{deployment="east",model="chat",reason="stop"} 1.0' in metrics
    assert 'llm_proxy_deployment_time_to_first_token_seconds_count{deployment="east",model="chat"} 1.0' in metrics


async def test_the_openai_door_streams_from_a_routed_model() -> None:
    chat = {"name": "chat", "deployments": [{**FAST_MOCK, "name": "east"}, {**FAST_MOCK, "name": "west"}]}
    async with proxy(upstream_config([chat], resume={"enabled": False})) as client:
        reply = await client.post("/v1/chat/completions", json=chat_body(model="chat"))
        response, parsed = await read_stream(client, "POST", "/v1/chat/completions", json=chat_body(model="chat", stream=True))
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "hi there"
    assert response.status_code == 200 and parsed.events[-1].data == "[DONE]"
    assert "deployment" not in response.text  # the door's own wire format is unchanged
