"""Budgets per identity (issue 23), in one process: the proxy under uvicorn, the mock upstream, real JWTs.

The in-memory budgets follow an injected wall clock, so a minute passes without waiting for it. The mock
reports usage as the prompt's words and the answer's chunks, so every bill here is known exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import anyio
import jwt
import pytest

from llm_sse_proxy.proxy.admission.budgets import MESSAGE_OVERHEAD
from tests.conftest import LOAD_TEST_LIMITS, RESUME_OFF, chat_body, make_config, payloads, proxy, read_stream

pytestmark = pytest.mark.anyio

SECRET = "a-shared-secret-of-32-characters-or-more"
ADMIN = "an-admin-key-0123456789abcdef"
ENV = {"JWT_SECRET": SECRET, "ADMIN_KEYS": ADMIN}
AUTH = {"jwt": {"secret": "${JWT_SECRET}", "tier_claim": "plan"}, "admin_keys": ["${ADMIN_KEYS}"]}
REPLY = "one two three four five six seven eight nine ten"  # 10 chunks of 5 characters
MOCK = {"name": "mock", "adapter": "mock", "reply": REPLY, "chunk_chars": 5, "chunk_delay_ms": 0}
NOW = 1_800_000_000.0 + 5  # 5 s into a minute


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def user(sub: str = "alice", **extra: Any) -> dict[str, str]:
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 600, **extra}, SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}


def config(budgets: dict[str, Any], models: list[dict[str, Any]] | None = None, **top: Any) -> Any:
    return make_config(models or [MOCK], auth=AUTH, budgets=budgets, environ=ENV, **top)


def prompt_estimate(content: str = "hi") -> int:
    return math.ceil(len(content) / 4) + MESSAGE_OVERHEAD


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]


async def usage_of(client: Any, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await client.get("/usage", headers=headers)
    assert response.status_code == 200, response.text
    return {b["budget"]: b for b in response.json()["budgets"]}


async def test_tokens_per_minute_spent_is_a_429_with_retry_after_then_the_next_minute_admits() -> None:
    clock = Clock()
    async with proxy(config({"users": {"tokens_per_minute": 30}}), wall_clock=clock) as client:
        statuses = []
        for _ in range(10):  # each answer costs 1 + 10 tokens; the fourth finds nothing left
            response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        refused = response
        left = await usage_of(client, user())
        clock.now += 60
        again, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200} and len(statuses) <= 4
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded" and "tokens_per_minute" in error["message"]
    assert refused.headers["retry-after"] == "55"  # the minute's window ends in 55 s
    assert left["tokens_per_minute"]["left"] == 0 and left["tokens_per_minute"]["resets_in"] == 55
    assert again.status_code == 200 and payloads(parsed)[-1]["reason"] == "stop"


async def test_a_request_is_admitted_with_max_tokens_capped_to_what_is_left() -> None:
    budget = prompt_estimate() + 4  # room for the prompt and 4 answer tokens
    async with proxy(config({"users": {"tokens_per_day": budget}})) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        asked, parsed_asked = await read_stream(client, "POST", "/chat", json=chat_body(max_tokens=2),
                                                headers=user("bob"))
    end = payloads(parsed)[-1]
    assert end["reason"] == "length" and end["usage"]["completion_tokens"] == budget
    assert payloads(parsed_asked)[-1]["usage"]["completion_tokens"] == 2  # under the cap: as asked


async def test_a_finished_stream_is_billed_its_real_usage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    priced = {**MOCK, "price": {"input": 2.0, "output": 8.0}}
    async with proxy(config({"users": {"tokens_per_day": 1000, "spend_per_day": 1.0}}, [priced])) as client:
        await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        used = await usage_of(client, user())
    [line] = access_lines(caplog)
    assert line["client"] == "user:alice" and line["billed_tokens"] == 11 and line["estimated"] is False
    assert line["cost"] == pytest.approx((1 * 2.0 + 10 * 8.0) / 1e6)
    assert used["tokens_per_day"]["used"] == 11 and used["spend_per_day"]["used"] == pytest.approx(82e-6, abs=1e-9)


async def test_a_spend_budget_caps_the_answer_then_refuses() -> None:
    priced = {**MOCK, "price": {"input": 100_000.0, "output": 100_000.0}}  # 0.1 a token
    async with proxy(config({"users": {"spend_per_day": 1.5}}, [priced])) as client:
        first, whole = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())  # 1.1 spent
        second, capped = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        third = await client.post("/chat", json=chat_body(), headers=user())
    assert first.status_code == second.status_code == 200 and payloads(whole)[-1]["reason"] == "stop"
    assert payloads(capped)[-1]["reason"] == "length" and payloads(capped)[-1]["usage"]["completion_tokens"] == 4
    assert third.status_code == 429 and "spend_per_day" in third.json()["error"]["message"]


async def test_a_cut_stream_is_charged_an_estimate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    cut = {**MOCK, "fail_after_chunks": 3}
    async with proxy(config({"users": {"tokens_per_day": 1000}}, [cut], retry={"attempts": 1})) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        used = await usage_of(client, user())
    assert payloads(parsed)[-1]["reason"] == "error"
    [line] = access_lines(caplog)
    expected = prompt_estimate() + math.ceil(15 / 4)  # the prompt, and 3 chunks of 5 characters
    assert line["estimated"] is True and line["billed_tokens"] == expected
    assert used["tokens_per_day"]["used"] == expected


async def test_an_abandoned_stream_is_charged_an_estimate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    slow = {**MOCK, "chunk_delay_ms": 200}
    async with proxy(config({"users": {"tokens_per_day": 1000}}, [slow], **RESUME_OFF)) as client:
        async with client.stream("POST", "/chat", json=chat_body(), headers=user()) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break  # one chunk read, then the client leaves
        with anyio.fail_after(10):
            while not access_lines(caplog):
                await anyio.sleep(0.05)
        used = await usage_of(client, user())
    [line] = access_lines(caplog)
    assert line["reason"] == "cancelled" and line["estimated"] is True
    assert line["billed_tokens"] >= prompt_estimate() + 2  # at least the one chunk read
    assert used["tokens_per_day"]["used"] == line["billed_tokens"]


async def test_a_recovered_stream_is_charged_for_both_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    recovering = {**MOCK, "fail_after_chunks": 4, "fail_continuations": False, "recovery": "continue",
                  "continue_with": "trailing_assistant"}
    async with proxy(config({"users": {"tokens_per_day": 1000}}, [recovering], retry={"backoff_initial": 0})) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        used = await usage_of(client, user())
    end = payloads(parsed)[-1]
    assert end["reason"] == "stop" and end["recovered"]["kind"] == "continue"
    [line] = access_lines(caplog)
    first_attempt = prompt_estimate() + math.ceil(20 / 4)  # no usage came with the cut: estimated
    assert line["billed_tokens"] == end["usage"]["prompt_tokens"] + end["usage"]["completion_tokens"] + first_attempt
    assert line["estimated"] is True and used["tokens_per_day"]["used"] == line["billed_tokens"]


async def test_a_reconnect_that_replays_a_stream_bills_nothing() -> None:
    async with proxy(config({"users": {"tokens_per_day": 1000}})) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        before = await usage_of(client, user())
        replay, replayed = await read_stream(client, "POST", "/chat", json=chat_body(),
                                             headers={**user(), "last-event-id": parsed.events[1].id})
        after = await usage_of(client, user())
    assert replay.status_code == 200 and payloads(replayed)[-1]["action"] == "terminate"
    assert after["tokens_per_day"]["used"] == before["tokens_per_day"]["used"] == 11


async def test_100_concurrent_requests_from_one_user_whose_budget_fits_10_admit_exactly_10() -> None:
    budgets = {"users": {"requests_per_minute": 10, "tokens_per_minute": 100_000}}
    async with proxy(config(budgets, limits=LOAD_TEST_LIMITS)) as client:
        headers = user()
        body = chat_body(max_tokens=5)  # without max_tokens, a request reserves all the tokens left
        responses = await asyncio.gather(*[client.post("/chat", json=body, headers=headers) for _ in range(100)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 90
    assert {r.json()["error"]["type"] for r in responses if r.status_code == 429} == {"budget_exceeded"}


async def test_100_concurrent_requests_share_a_token_budget_exactly() -> None:
    # A prompt of 8 one-letter words: the estimate (15 characters / 4 + 4) and the mock's count (8 words) agree,
    # and max_tokens 5 is what each answer uses, so a settle frees nothing and timing cannot matter.
    content = "a b c d e f g h"
    assert prompt_estimate(content) == 8
    budgets = {"users": {"tokens_per_minute": 10 * (8 + 5)}}
    async with proxy(config(budgets, limits=LOAD_TEST_LIMITS)) as client:
        headers, body = user(), chat_body(content, max_tokens=5)
        responses = await asyncio.gather(*[client.post("/chat", json=body, headers=headers) for _ in range(100)])
        used = await usage_of(client, headers)
    assert sorted(r.status_code for r in responses) == [200] * 10 + [429] * 90
    assert used["tokens_per_minute"]["used"] == 130 and used["tokens_per_minute"]["left"] == 0


async def test_a_streams_budget_limits_open_streams() -> None:
    slow = {**MOCK, "chunk_delay_ms": 100}
    async with proxy(config({"users": {"streams": 1}}, [slow])) as client:
        async with client.stream("POST", "/chat", json=chat_body(), headers=user()) as held:
            assert held.status_code == 200
            refused = await client.post("/chat", json=chat_body(), headers=user())
            other = await client.post("/chat", json=chat_body(), headers=user("bob"))
            await held.aread()
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_streams"
    assert other.status_code == 200


async def test_a_tier_overrides_the_users_budget_field_by_field() -> None:
    budgets = {"users": {"tokens_per_minute": 5, "tokens_per_day": 1000}, "tiers": {"pro": {"tokens_per_minute": 500}}}
    async with proxy(config(budgets)) as client:
        free = await client.post("/chat", json=chat_body(), headers=user("ann"))
        pro = await client.post("/chat", json=chat_body(), headers=user("ann", plan="pro"))
        shown = await usage_of(client, user("ann", plan="pro"))
    assert free.status_code == 200 and pro.status_code == 200  # ann free: capped to 5 tokens, then spent
    assert shown["tokens_per_minute"]["limit"] == 500 and shown["tokens_per_day"]["limit"] == 1000


async def test_a_client_key_has_its_own_budget() -> None:
    key = "a-client-key-0123456789abcdef"
    import hashlib
    kid = hashlib.sha256(key.encode()).hexdigest()[:12]
    auth = {"keys": ["${CLIENT_KEYS}"]}
    cfg = make_config([MOCK], auth=auth, budgets={"keys": {kid: {"requests_per_minute": 1}}},
                      environ={"CLIENT_KEYS": key})
    async with proxy(cfg) as client:
        headers = {"authorization": f"Bearer {key}"}
        first = await client.post("/chat", json=chat_body(), headers=headers)
        second = await client.post("/chat", json=chat_body(), headers=headers)
        shown = (await client.get("/usage", headers=headers)).json()
    assert first.status_code == 200 and second.status_code == 429
    assert shown["identity"] == f"key:{kid}" and shown["budgets"][0]["left"] == 0


async def test_the_openai_door_refuses_a_spent_budget_in_its_own_shape() -> None:
    async with proxy(config({"users": {"requests_per_minute": 1}})) as client:
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        first = await client.post("/v1/chat/completions", json=body, headers=user())
        second = await client.post("/v1/chat/completions", json=body, headers=user())
    assert first.status_code == 200 and second.status_code == 429
    assert second.headers["retry-after"] and "requests_per_minute" in second.json()["error"]["message"]
    assert second.json()["error"]["type"] == "budget_exceeded"


async def test_usage_is_the_callers_own_and_an_admin_reads_and_resets_anyones() -> None:
    async with proxy(config({"users": {"tokens_per_day": 100}})) as client:
        await read_stream(client, "POST", "/chat", json=chat_body(), headers=user())
        mine = await client.get("/usage", headers=user())
        nosy = await client.get("/usage", params={"user": "bob"}, headers=user())
        anonymous = await client.get("/usage")
        read = await client.get("/usage", params={"user": "alice"}, headers=ADMIN_HEADERS)
        not_admin = await client.post("/usage/reset", params={"user": "alice"}, headers=user())
        reset = await client.post("/usage/reset", params={"user": "alice"}, headers=ADMIN_HEADERS)
        after = await usage_of(client, user())
    assert mine.json()["identity"] == "user:alice" and mine.json()["budgets"][0]["used"] == 11
    assert mine.headers["cache-control"] == "no-store"
    assert nosy.status_code == 403 and anonymous.status_code == 401 and not_admin.status_code == 403
    assert read.json()["budgets"] == mine.json()["budgets"]
    assert reset.status_code == 200 and after["tokens_per_day"]["used"] == 0


async def test_metrics_count_billed_tokens_by_model_and_tier_and_refusals() -> None:
    async with proxy(config({"users": {"requests_per_minute": 1}, "tiers": {"pro": {"requests_per_minute": 1}}})) as client:
        await read_stream(client, "POST", "/chat", json=chat_body(), headers=user(plan="pro"))
        await client.post("/chat", json=chat_body(), headers=user(plan="pro"))
        text = (await client.get("/metrics")).text
    assert 'llm_proxy_billed_tokens_total{estimated="no",model="mock",tier="pro"} 11.0' in text
    assert 'llm_proxy_budget_refusals_total{budget="requests_per_minute",tier="pro"} 1.0' in text
    assert "alice" not in text
