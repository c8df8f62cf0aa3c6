"""Vercel's AI SDK (`ai`, from tests/ui_chat/package-lock.json) against the UI message stream door:
`DefaultChatTransport` sends the chat or reconnects, `readUIMessageStream` builds the UIMessage, and each
message is compared part by part with the one expected. Resume after a cut (one process, and two
processes sharing a real redis-server), and a stop that closes the upstream."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from llm_sse_proxy.proxy.app import create_app
from tests.conftest import make_config, serve
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.replicas import BEARER, SLOW_MODEL, replica_config, replicas, wait_healthy
from tests.ui_chat_npm import run_steps, ui_chat_node  # noqa: F401 (a fixture)
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

REPLY = "Streams, resumed and stopped."
RICH = {"name": "rich", "adapter": "mock", "reply": REPLY, "chunk_chars": 4, "chunk_delay_ms": 0,
        "thinking": "Let me think.", "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Oslo"}'}]}
PLAIN = {"name": "plain", "adapter": "mock", "reply": REPLY, "chunk_chars": 4, "chunk_delay_ms": 0}
FAILING = {**PLAIN, "name": "failing", "fail_after_chunks": 2}
SLOW = {**PLAIN, "name": "slow", "chunk_delay_ms": 60}
HELLO = [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hello"}]}]


def chat(api: str, chat_id: str, model: str, **step: Any) -> dict[str, Any]:
    return {"op": "chat", "api": api, "chatId": chat_id, "messages": HELLO, "body": {"model": model}, **step}


def resume(api: str, chat_id: str, **step: Any) -> dict[str, Any]:
    return {"op": "resume", "api": api, "chatId": chat_id, **step}


def answer(text: str, *, model: str, usage: dict[str, int], before: list[dict[str, Any]] = (),  # type: ignore[assignment]
           after: list[dict[str, Any]] = (), **metadata: Any) -> dict[str, Any]:  # type: ignore[assignment]
    """The UIMessage the SDK builds for a finished answer (its id aside)."""
    return {"role": "assistant", "metadata": {"model": model, "usage": usage, **metadata},
            "parts": [{"type": "step-start"}, *before, {"type": "text", "text": text, "state": "done"}, *after]}


def without_id(message: dict[str, Any]) -> dict[str, Any]:
    assert message["id"].startswith("msg-"), message
    return {key: value for key, value in message.items() if key != "id"}


async def test_text_reasoning_and_a_tool_call_build_the_message_part_by_part(ui_chat_node: str) -> None:
    async with serve(create_app(make_config([PLAIN, RICH]))) as base:
        plain, rich, refused = await run_steps(ui_chat_node, [
            chat(base + "/api/chat", "c1", "plain"), chat(base + "/api/chat", "c2", "rich"),
            chat(base + "/api/chat", "c3", "plain", body={"model": "plain", "temperature": 0})])
    usage = {"inputTokens": 1, "outputTokens": 8, "totalTokens": 9}
    assert plain["errors"] == [] and without_id(plain["message"]) == answer(REPLY, model="plain", usage=usage)
    assert plain["chunks"] == ["start", "start-step", "text-start", *["text-delta"] * 8, "text-end", "finish-step",
                               "finish"]
    reasoning = {"type": "reasoning", "id": "reasoning-1", "text": "Let me think.", "state": "done"}
    call = {"type": "tool-get_weather", "toolCallId": "call_mock_0", "state": "input-available",
            "input": {"city": "Oslo"}}
    assert rich["errors"] == []
    assert "temperature: this door takes no such field" in refused["thrown"]  # the SDK throws the 400's body
    assert without_id(rich["message"]) == answer(REPLY, model="rich", usage={**usage, "outputTokens": 8},
                                                 before=[reasoning], after=[call])


async def test_an_upstream_error_mid_answer_is_the_error_other_doors_give(ui_chat_node: str) -> None:
    async with serve(create_app(make_config([FAILING]))) as base:
        async with httpx2.AsyncClient(timeout=10) as client:
            article = await client.post(base + "/chat", json={"messages": [{"role": "user", "content": "Hello"}]})
        (got,) = await run_steps(ui_chat_node, [chat(base + "/api/chat", "c1", "failing")])
    terminate = [line for line in article.text.splitlines() if '"terminate"' in line][0]
    message = terminate.split('"message":"')[1].split('"')[0]
    assert got["errors"] == [message]
    assert got["message"]["parts"] == [{"type": "step-start"}, {"type": "text", "text": REPLY[:8], "state": "done"}]
    assert got["chunks"][-1] == "error"


async def test_a_recovery_by_restart_leaves_one_whole_answer(ui_chat_node: str) -> None:
    """The cut attempt's text, then a `start` with a new message id: the SDK starts the message over."""
    async with mock_upstream() as up:
        model = up.model("gpt", "gpt+close_after=3+fault_attempts=1", recovery="restart")
        async with serve(create_app(upstream_config([model]))) as base:
            (got,) = await run_steps(ui_chat_node, [chat(base + "/api/chat", "c1", "gpt")])
    assert got["errors"] == []
    assert got["chunks"].count("start") == 2 and got["chunks"].index("start", 1) > got["chunks"].index("text-delta")
    message = got["message"]
    assert message["parts"] == [{"type": "step-start"}, {"type": "text", "text": DEFAULT_REPLY, "state": "done"}]
    assert message["metadata"]["recovered"] == {"kind": "restart", "after_chars": 15, "model": "gpt"}
    assert message["id"].endswith("~1")


async def test_a_cut_chat_resumes_whole_and_a_chat_with_no_stream_is_204(ui_chat_node: str) -> None:
    async with serve(create_app(make_config([SLOW]))) as base:
        api = base + "/api/chat"
        cut, resumed, again, unknown = await run_steps(ui_chat_node, [
            chat(api, "c1", "slow", cutAfter=4), resume(api, "c1"), resume(api, "c1"), resume(api, "nope")])
    assert cut["chunks"][:4] == ["start", "start-step", "text-start", "text-delta"], cut
    assert set(cut["chunks"][4:]) <= {"text-delta"}, cut  # what was already read when the fetch was aborted
    expected = answer(REPLY, model="slow", usage={"inputTokens": 1, "outputTokens": 8, "totalTokens": 9})
    assert resumed["errors"] == [] and without_id(resumed["message"]) == expected
    assert resumed["chunks"][0] == "start"  # a replay from the start, as the SDK expects
    assert resumed["message"]["id"] == cut["message"]["id"]
    assert without_id(again["message"]) == expected  # finished and retained: replayed whole (resumable-stream #44)
    assert unknown == {"resumed": False}


async def test_a_chat_cut_on_one_replica_resumes_on_another(ui_chat_node: str, redis_server: RedisServer,  # noqa: F811
                                                            tmp_path: Path) -> None:
    """And a stop sent to the replica that does not run the generation ends it there (a stop signal)."""
    config = replica_config(models=[SLOW_MODEL])
    config["resume"] = {**config["resume"], "store": "redis", "grace": 60}
    with replicas(tmp_path, config, {"REDIS_URL": redis_server.url}) as (first, second):
        await wait_healthy(first, second)
        on_first, on_second = first.url + "/api/chat", second.url + "/api/chat"
        cut, resumed, stopped, after_stop = await run_steps(ui_chat_node, [
            chat(on_first, "c1", "slow", cutAfter=4, headers=BEARER), resume(on_second, "c1", headers=BEARER),
            chat(on_first, "c2", "slow", stopAfter=4, stopApi=on_second, headers=BEARER),
            resume(on_second, "c2", headers=BEARER),
        ])
    assert cut["chunks"][-1] == "text-delta" and cut["errors"] == [], cut
    assert resumed.get("errors") == [], resumed
    assert resumed["message"]["parts"] == [{"type": "step-start"},
                                           {"type": "text", "text": SLOW_MODEL["reply"], "state": "done"}]
    assert resumed["message"]["metadata"]["model"] == "slow"
    assert stopped["errors"] == [], stopped
    assert after_stop["chunks"][-1] == "abort" and "finish" not in after_stop["chunks"], after_stop
    assert after_stop["message"]["parts"][1]["text"] != SLOW_MODEL["reply"]


async def test_stop_closes_the_upstream_within_a_second(ui_chat_node: str) -> None:
    """The stop request, then the aborted fetch: the generation ends at once, not after resume.grace."""
    async with mock_upstream() as up:
        model = up.model("gpt", "gpt+delay_ms=100")
        config = upstream_config([model], resume={"grace": 60})
        async with serve(create_app(config)) as base:
            (got,) = await run_steps(ui_chat_node, [chat(base + "/api/chat", "c1", "gpt", stopAfter=4)])
            closed = await up.recorder.wait_closed(0, timeout=5)
            async with httpx2.AsyncClient(timeout=10) as client:
                replay = await client.get(base + "/api/chat/c1/stream")
    # Pieces already on their way when the fetch was aborted may still be read; nothing after them.
    assert got["errors"] == [] and got["chunks"][:4] == ["start", "start-step", "text-start", "text-delta"], got
    assert set(got["chunks"][4:]) <= {"text-delta"}, got
    assert not up.recorder.attempts[0].finished
    wall = closed + (time.time() - time.monotonic())
    assert wall - got["stoppedAt"] < 1.0  # the bound
    assert replay.text.endswith('data: {"type":"abort","reason":"stopped"}\n\ndata: [DONE]\n\n'), replay.text
