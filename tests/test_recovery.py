"""Mid-stream recovery (issue 12) through the real relay: uvicorn both ways, the mock upstream cutting answers.

Every test checks the text the client assembles against the canonical answer, byte for byte (after
applying `reset` events: everything before the last one is discarded), and what the upstream saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_sse_proxy.adapters.mock import DEFAULT_REPLY as MOCK_REPLY
from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from llm_sse_proxy.mock_upstream.continuation import PREFILL_REJECTED
from llm_sse_proxy.proxy.config import load_config
from tests.conftest import RESUME_OFF, assert_one_terminate_last, chat_body, proxy
from tests.sse_parse import parse_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

CHUNKS = [DEFAULT_REPLY[i : i + 5] for i in range(0, len(DEFAULT_REPLY), 5)]  # the mock's chunks of 5


async def converse(client: Any, **extra: Any) -> tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]], bytes]:
    """The text a client shows (resets applied), the terminate, every (event type, payload), and the raw bytes."""
    async with client.stream("POST", "/chat", json=chat_body("hi", **extra)) as response:
        raw = await response.aread()
    parsed = parse_stream(raw).events
    events = [(e.type, json.loads(e.data)) for e in parsed]
    terminate = assert_one_terminate_last([p for _, p in events])
    shown: list[str] = []
    for kind, payload in events[:-1]:
        if kind == "reset":
            shown.clear()
        elif kind == "message":
            shown.append(payload["text"])
    ids = [e.id for e in parsed]
    assert len(set(ids)) == len(ids), ids  # one id sequence across attempts: never an id twice
    return "".join(shown), terminate, events, raw


def recovering(up: Any, name: str, faults: str, dialect: str = "openai", **model: Any) -> dict[str, Any]:
    return up.model(name, f"{name}+{faults}", dialect, **model)


@pytest.mark.parametrize("spelling", ["trailing_assistant", "prefix_flag", "continue_final_message"])
@pytest.mark.parametrize("cut", [1, 2, 7, len(CHUNKS) - 1])
async def test_a_cut_answer_is_continued_whole(spelling: str, cut: int) -> None:
    async with mock_upstream() as up:
        model = recovering(up, "gpt", f"drop_after={cut}+fault_attempts=1+continue_with={spelling}",
                           recovery="continue", continue_with=spelling)
        async with proxy(upstream_config([model])) as client:
            text, terminate, events, _ = await converse(client)
    assert text == DEFAULT_REPLY
    assert terminate["reason"] == "stop"
    sent = "".join(CHUNKS[:cut])
    assert terminate["recovered"] == {"kind": "continue", "after_chars": len(sent), "model": "gpt"}
    assert [kind for kind, _ in events].count("reset") == 0
    first, second = up.recorder.attempts
    assert first.fault == "drop_after" and second.finished and second.fault is None
    last = second.body["messages"][-1]
    assert last["role"] == "assistant" and last["content"] == sent.rstrip()
    assert (last.get("prefix") is True) == (spelling == "prefix_flag")
    assert (second.body.get("continue_final_message") is True) == (spelling == "continue_final_message")


async def test_every_cut_point_of_the_answer_is_continued_whole() -> None:
    async with mock_upstream() as up:
        models = [recovering(up, f"m{cut}", f"close_after={cut}+fault_attempts=1", recovery="continue",
                             continue_with="trailing_assistant") for cut in range(1, len(CHUNKS))]
        async with proxy(upstream_config(models)) as client:
            for cut in range(1, len(CHUNKS)):
                text, terminate, _, _ = await converse(client, model=f"m{cut}")
                assert (text, terminate["reason"]) == (DEFAULT_REPLY, "stop"), cut
                assert terminate["recovered"]["after_chars"] == len("".join(CHUNKS[:cut]))
    assert up.recorder.count() == 2 * (len(CHUNKS) - 1)


@pytest.mark.parametrize("fault", ["close_after=4", "error_after=4", "stall_after=4"])
async def test_a_truncation_an_in_band_5xx_and_a_stall_are_continued(fault: str) -> None:
    timeouts = {"connect": 2, "first_token": 5, "idle": 0.4, "total": 30}
    async with mock_upstream() as up:
        model = recovering(up, "gpt", f"{fault}+fault_attempts=1", recovery="continue", continue_with="trailing_assistant")
        async with proxy(upstream_config([model], timeouts=timeouts)) as client:
            text, terminate, _, _ = await converse(client)
        await up.recorder.wait_closed(0, timeout=2)  # the stalled attempt was closed, not left open
    assert text == DEFAULT_REPLY and terminate["reason"] == "stop" and terminate["recovered"]["kind"] == "continue"
    assert up.recorder.count() == 2


@pytest.mark.parametrize("echo", [1, 3, 8, 15])
async def test_a_continuation_that_repeats_the_prefills_end_is_spliced(echo: int) -> None:
    async with mock_upstream() as up:
        model = recovering(up, "gpt", f"drop_after=6+fault_attempts=1+echo_chars={echo}", recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([model])) as client:
            text, terminate, _, _ = await converse(client)
    # "Hello! This is the mock upstream, " cut after "...the mock up": echoes of 1 and 3 start mid-word,
    # which the seam keeps only if they are 8 or more characters or begin a word (proxy/relay/splice.py).
    sent = "".join(CHUNKS[:6])
    echoed = sent[len(sent) - echo :]
    if echo >= 8 or echoed[0] != " " and sent[len(sent) - echo - 1] == " ":
        assert text == DEFAULT_REPLY
    else:
        assert text == sent + echoed + DEFAULT_REPLY[len(sent):]  # pinned: a short mid-word echo is kept
    assert terminate["reason"] == "stop"


async def test_a_refused_prefill_restarts_for_a_client_that_asked_for_resets() -> None:
    async with mock_upstream() as up:
        model = recovering(up, "claude", "drop_after=3+fault_attempts=1+prefill=reject", recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([model])) as client:
            text, terminate, events, _ = await converse(client, events=["reset"])
    assert text == DEFAULT_REPLY and terminate["reason"] == "stop"
    assert terminate["recovered"] == {"kind": "restart", "after_chars": 15, "model": "claude"}
    resets = [payload for kind, payload in events if kind == "reset"]
    assert resets == [{"action": "reset", "reason": "truncated", "model": "claude"}]
    assert [a.status for a in up.recorder.attempts] == [200, 400, 200]
    assert up.recorder.attempts[2].body["messages"][-1]["role"] == "user"  # asked again from the start


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_refused_prefill_never_masks_the_original_failure(dialect: str) -> None:
    async with mock_upstream() as up:
        model = recovering(up, "claude", "drop_after=3+fault_attempts=1+prefill=reject", dialect, recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([model])) as client:
            text, terminate, events, _ = await converse(client)
    assert text == "".join(CHUNKS[:3])
    assert terminate["reason"] == "error" and terminate["error"]["type"] == "truncated"
    assert PREFILL_REJECTED not in json.dumps(terminate) and "recovered" not in terminate
    assert [a.status for a in up.recorder.attempts] == [200, 400]


async def test_a_model_that_starts_over_is_reset_or_ends_with_the_original_error() -> None:
    # The server wants continue_final_message; configured as trailing_assistant, it answers a new turn.
    async with mock_upstream() as up:
        models = [recovering(up, name, "drop_after=9+fault_attempts=1+continue_with=continue_final_message",
                             recovery="continue", continue_with="trailing_assistant") for name in ("v1", "v2")]
        async with proxy(upstream_config(models)) as client:
            text, terminate, events, _ = await converse(client, events=["reset"], model="v1")
            plain, plain_terminate, _, _ = await converse(client, model="v2")
    assert text == DEFAULT_REPLY and terminate["recovered"]["kind"] == "restart"
    assert [kind for kind, _ in events].count("reset") == 1
    assert plain == "".join(CHUNKS[:9]) and plain_terminate["error"]["type"] == "truncated"


async def test_restart_mode_resets_for_a_client_that_opted_in() -> None:
    async with mock_upstream() as up:
        model = recovering(up, "gpt", "stall_after=5+fault_attempts=1", recovery="restart")
        config = upstream_config([model], timeouts={"connect": 2, "first_token": 5, "idle": 0.3, "total": 30})
        async with proxy(config) as client:
            text, terminate, events, _ = await converse(client, events=["reset"])
    assert text == DEFAULT_REPLY and terminate["recovered"] == {"kind": "restart", "after_chars": 25, "model": "gpt"}
    kinds = [kind for kind, _ in events]
    assert kinds.count("reset") == 1 and kinds.index("reset") == 5  # after the 5 texts of the first attempt
    assert events[5][1]["reason"] == "timeout"
    assert "messages" in up.recorder.attempts[1].body and up.recorder.attempts[1].body["messages"][-1]["role"] == "user"


async def test_restart_mode_without_opt_in_sends_todays_bytes() -> None:
    async with mock_upstream() as up:
        restart = recovering(up, "a", "drop_after=3", recovery="restart")
        off = up.model("a", "a+drop_after=3")  # recovery: off, the default
        async with proxy(upstream_config([restart], **RESUME_OFF)) as client:
            _, _, _, with_restart = await converse(client)
        async with proxy(upstream_config([off], **RESUME_OFF)) as client:
            _, _, _, today = await converse(client)
    assert with_restart == today
    assert up.recorder.count() == 2


async def test_never_continued_after_a_named_event() -> None:
    async with mock_upstream() as up:
        models = [recovering(up, name, "reasoning=2+drop_after=3+fault_attempts=1", recovery="continue",
                             continue_with="trailing_assistant") for name in ("r1", "r2")]
        async with proxy(upstream_config(models)) as client:
            text, terminate, _, _ = await converse(client, events=["reasoning"], model="r1")
            again, restarted, events, _ = await converse(client, events=["reasoning", "reset"], model="r2")
    assert text == "".join(CHUNKS[:3]) and terminate["error"]["type"] == "truncated"
    assert again == DEFAULT_REPLY and restarted["recovered"]["kind"] == "restart"
    assert all(a.body["messages"][-1]["role"] == "user" for a in up.recorder.attempts)  # never a prefill


@pytest.mark.parametrize(("first", "then", "spelling"), [
    ("openai", "anthropic", "trailing_assistant"),
    ("anthropic", "openai", "continue_final_message"),
    ("gemini", "ollama", "trailing_assistant"),
    ("ollama", "gemini", "trailing_assistant"),
])
async def test_a_fallback_of_another_dialect_continues_the_answer(first: str, then: str, spelling: str) -> None:
    async with mock_upstream() as up:
        primary = up.model("primary", "p+drop_after=4", first, recovery="continue", fallbacks=["backup"],
                           continue_with="none")
        backup = up.model("backup", f"b+continue_with={spelling}", then, continue_with=spelling)
        config = upstream_config([primary, backup], retry={"attempts": 1})
        async with proxy(config) as client:
            text, terminate, _, _ = await converse(client)
    assert text == DEFAULT_REPLY and terminate["model"] == "backup"
    assert terminate["recovered"] == {"kind": "continue", "after_chars": 20, "model": "backup"}
    assert [a.model for a in up.recorder.attempts] == ["p+drop_after=4", f"b+continue_with={spelling}"]


async def test_usage_sums_every_attempt_that_reported_it() -> None:
    async with mock_upstream() as up:
        healthy = up.model("healthy", "h", "anthropic")
        model = recovering(up, "claude", "drop_after=4+fault_attempts=1", "anthropic", recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([healthy, model])) as client:
            _, alone, _, _ = await converse(client, model="healthy")
            text, terminate, _, _ = await converse(client, model="claude")
    assert text == DEFAULT_REPLY
    usage, one = terminate["usage"], alone["usage"]
    # The cut attempt's message_start counts (its prompt, 1 output token), plus the whole continuation.
    assert usage["completion_tokens"] == 1 + (len(CHUNKS) - 4)
    assert usage["prompt_tokens"] > 2 * one["prompt_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


LONG = " ".join(f"word{i}" for i in range(60)) + "."  # 40-character chunks: a continuation fills the seam


@pytest.mark.parametrize(("budget", "whole"), [(None, False), (1, False), (2, True)])
async def test_recoveries_stop_at_the_budget(budget: int | None, whole: bool) -> None:
    faults = {} if budget is None else {"max_recoveries": budget}
    async with mock_upstream(reply=LONG) as up:
        model = recovering(up, "gpt", "chunk_chars=40+drop_after=3+fault_attempts=2", recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([model], faults=faults)) as client:
            text, terminate, _, _ = await converse(client)
    if whole:
        assert text == LONG and terminate["reason"] == "stop" and up.recorder.count() == 3
        assert terminate["recovered"]["after_chars"] == 240  # the last recovery's
    else:  # the continuation was cut again after it had sent text: the one recovery was spent
        assert text == LONG[:240] and terminate["error"]["type"] == "truncated" and up.recorder.count() == 2
        assert terminate["recovered"] == {"kind": "continue", "after_chars": 120, "model": "gpt"}


async def test_recoveries_are_counted_in_metrics_and_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="llm_sse_proxy.access")
    async with mock_upstream() as up:
        model = recovering(up, "gpt", "drop_after=3+fault_attempts=1", recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([model])) as client:
            await converse(client)
            metrics = (await client.get("/metrics")).text
    assert 'llm_proxy_recoveries_total{kind="continue",model="gpt"} 1.0' in metrics
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]
    assert lines[-1]["recovered"] == "continue" and lines[-1]["attempts"] == 2


async def test_a_model_without_continue_with_is_never_asked_to_continue() -> None:
    async with mock_upstream() as up:
        model = recovering(up, "gpt", "drop_after=3+fault_attempts=1", recovery="continue")  # continue_with: none
        async with proxy(upstream_config([model])) as client:
            text, terminate, _, _ = await converse(client)
    assert text == "".join(CHUNKS[:3]) and terminate["error"]["type"] == "truncated"
    assert up.recorder.count() == 1  # retries left, but no one to continue the answer


async def test_get_stream_opts_in_to_reset_with_a_query_parameter() -> None:
    async with mock_upstream() as up:
        model = recovering(up, "gpt", "close_after=2+fault_attempts=1", recovery="restart")
        async with proxy(upstream_config([model])) as client:
            async with client.stream("GET", "/stream", params={"prompt": "hi", "events": "reset"}) as response:
                raw = await response.aread()
    events = parse_stream(raw).events
    assert [e.type for e in events].count("reset") == 1
    after = [json.loads(e.data) for e in events[[e.type for e in events].index("reset") + 1 :]]
    assert "".join(p.get("text", "") for p in after) == DEFAULT_REPLY
    assert after[-1]["recovered"]["kind"] == "restart"


async def test_a_continuation_that_reasons_first_is_still_spliced() -> None:
    async with mock_upstream() as up:
        model = recovering(up, "r1", "reasoning=2+drop_after=3+fault_attempts=1+echo_chars=8", recovery="continue",
                           continue_with="trailing_assistant")
        async with proxy(upstream_config([model])) as client:
            text, terminate, events, _ = await converse(client)  # reasoning not asked for
    assert text == DEFAULT_REPLY and terminate["recovered"]["kind"] == "continue"
    assert {kind for kind, _ in events} == {"message"}


async def test_the_offline_mock_rehearses_a_recovery() -> None:
    config = load_config(Path(__file__).parent.parent / "config.yaml", environ={})
    async with proxy(config) as client:
        for _ in range(2):  # every answer is lost after 5 chunks, and continued
            text, terminate, _, _ = await converse(client, model="mock-recover")
            assert text == MOCK_REPLY and terminate["reason"] == "stop"
            assert terminate["recovered"] == {"kind": "continue", "after_chars": 30, "model": "mock-recover"}
