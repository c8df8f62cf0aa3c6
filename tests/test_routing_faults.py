"""The fault benchmark's last gaps (issue 22), reproduced with the mock upstream's faults, and the hedged
first token: a silent route that then died goes to the next candidate; a stall mid-answer is recovered
by the next candidate, not the one that stalled; a silent first try is hedged, and the loser closed."""

from __future__ import annotations

import pytest

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from tests.conftest import assert_one_terminate_last, chat_body, payloads, proxy, read_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

RETRY = {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05}


async def converse(client, model: str = "gpt", events: tuple[str, ...] = ("reasoning",)) -> tuple[str, dict]:
    response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(model=model, events=list(events)))
    assert response.status_code == 200
    items = payloads(parsed)
    terminate = assert_one_terminate_last(items)
    return "".join(p.get("text", "") for p in items[:-1]), terminate


async def test_a_route_silent_then_dead_goes_to_the_next_candidate_not_again() -> None:
    timeouts = {"connect": 0.3, "first_token": 5, "idle": 5, "total": 30}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt+hangup_ms=600", fallbacks=["backup"]), up.model("backup", "backup")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
    assert text == DEFAULT_REPLY and terminate["model"] == "backup"
    assert up.recorder.count("gpt+hangup_ms=600") == 1  # the silent route was not asked again


async def test_a_silent_then_dead_deployment_hands_over_to_its_sibling_first() -> None:
    timeouts = {"connect": 0.3, "first_token": 5, "idle": 5, "total": 30}
    async with mock_upstream() as up:
        chat = {"name": "gpt", "strategy": "ordered", "fallbacks": ["backup"],
                "deployments": [up.model("east", "m+hangup_ms=600"), up.model("west", "m")]}
        async with proxy(upstream_config([chat, up.model("backup", "backup")], retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
    assert text == DEFAULT_REPLY and (terminate["model"], terminate["deployment"]) == ("gpt", "west")
    assert up.recorder.count("m+hangup_ms=600") == 1 and up.recorder.count("backup") == 0


async def test_a_fast_failure_is_still_retried_where_it_was() -> None:
    """The control: a 503 at once is not a silent route; the same model is asked again."""
    timeouts = {"connect": 2, "first_token": 5, "idle": 5, "total": 30}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt+fail=1:503", fallbacks=["backup"]), up.model("backup", "backup")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            _, terminate = await converse(client)
    assert terminate["model"] == "gpt" and up.recorder.count("gpt+fail=1:503") == 2


async def test_a_stall_mid_answer_is_recovered_by_the_next_candidate() -> None:
    timeouts = {"connect": 2, "first_token": 5, "idle": 0.4, "total": 30}
    async with mock_upstream() as up:
        stalling = up.model("gpt", "gpt+stall_after=4", fallbacks=["backup"], recovery="continue",
                            continue_with="trailing_assistant")
        chain = [stalling, up.model("backup", "backup", continue_with="trailing_assistant")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
        await up.recorder.wait_closed(0, timeout=2)  # the stalled attempt was closed, not left open
    assert text == DEFAULT_REPLY and terminate["reason"] == "stop"
    assert terminate["recovered"]["model"] == "backup"
    assert up.recorder.count("gpt+stall_after=4") == 1  # the model that stalled was not asked to stall again


async def test_a_silent_primary_is_hedged_and_the_fallback_answers_alone() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 0.3}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt+first_delay_ms=20000", fallbacks=["backup"]),
                 up.model("backup", "backup+delay_ms=60")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client, events=())
            metrics = (await client.get("/metrics")).text
        primary, hedge = up.recorder.attempts
        await up.recorder.wait_closed(1, timeout=10)
    assert text == DEFAULT_REPLY and terminate["model"] == "backup"  # one stream: the reply once, one terminate
    assert (primary.model, hedge.model) == ("gpt+first_delay_ms=20000", "backup+delay_ms=60")  # one request each
    assert primary.closed_at is not None and hedge.closed_at is not None
    assert primary.closed_at < hedge.closed_at  # the loser was closed while the winner was still streaming
    assert primary.chunks_sent == 0 and hedge.finished
    assert 'llm_proxy_hedges_total{model="gpt"} 1.0' in metrics


async def test_a_primary_that_answers_in_time_counts_no_hedge() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 5}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt", fallbacks=["backup"]), up.model("backup", "backup")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            await converse(client)
            metrics = (await client.get("/metrics")).text
    assert "llm_proxy_hedges_total{" not in metrics


async def test_a_hedge_goes_to_another_deployment_first() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 0.3}
    async with mock_upstream() as up:
        chat = {"name": "gpt", "strategy": "ordered", "fallbacks": ["backup"],
                "deployments": [up.model("east", "m+first_delay_ms=20000"), up.model("west", "m+delay_ms=60")]}
        async with proxy(upstream_config([chat, up.model("backup", "backup")], retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
        await up.recorder.wait_closed(1, timeout=10)
    assert text == DEFAULT_REPLY and terminate["deployment"] == "west"
    east, west = up.recorder.attempts
    assert east.closed_at < west.closed_at and up.recorder.count("backup") == 0


async def test_no_hedge_when_the_primary_answers_in_time() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 5}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt", fallbacks=["backup"]), up.model("backup", "backup")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
    assert text == DEFAULT_REPLY and terminate["model"] == "gpt" and up.recorder.count() == 1


async def test_a_hedge_that_fails_leaves_the_primary_to_answer() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 0.2}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt+first_delay_ms=800", fallbacks=["backup"]),
                 up.model("backup", "backup+fail=1:503")]
        async with proxy(upstream_config(chain, retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
    assert text == DEFAULT_REPLY and terminate["model"] == "gpt"
    assert up.recorder.count("backup+fail=1:503") == 1


async def test_with_hedging_on_a_primary_that_fails_at_once_is_retried_as_ever() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 5}
    async with mock_upstream() as up:
        chat = {"name": "gpt", "strategy": "ordered",
                "deployments": [up.model("east", "m+key=east+fail=1:503"), up.model("west", "m+key=west")]}
        single = up.model("solo", "solo+fail=1:503")
        async with proxy(upstream_config([chat, single], retry=RETRY, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
            solo_text, solo = await converse(client, model="solo")
    assert text == DEFAULT_REPLY and terminate["deployment"] == "west"
    assert solo_text == DEFAULT_REPLY and solo["reason"] == "stop" and up.recorder.count("solo+fail=1:503") == 2


async def test_a_primary_and_a_hedge_that_both_fail_end_in_the_error_not_a_crash() -> None:
    timeouts = {"connect": 2, "first_token": 30, "idle": 30, "total": 60, "hedge_after": 0.2}
    retry = {"attempts": 1, "backoff_initial": 0.01, "backoff_max": 0.05}
    async with mock_upstream() as up:
        chain = [up.model("gpt", "gpt+hangup_ms=600", fallbacks=["backup"]), up.model("backup", "backup+hangup_ms=900")]
        async with proxy(upstream_config(chain, retry=retry, timeouts=timeouts)) as client:
            text, terminate = await converse(client)
    assert text == "" and terminate["reason"] == "error"
    assert terminate["error"]["type"] == "truncated"  # the upstream's failure (a hang-up), not internal_error
