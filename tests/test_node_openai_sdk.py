"""The official `openai` npm package against the OpenAI-compatible door (tests/node/openai_sdk.mjs).

Its retries are off (maxRetries: 0), so each case shows the first answer's status.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from llm_sse_proxy.proxy.app import create_app
from tests.conftest import NODE_DIR, RESUME_OFF, serve
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

REPLY = "Hello from the door, in pieces."


async def run_sdk(node: str, base: str, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with anyio.fail_after(90):
        done = await anyio.run_process([node, str(NODE_DIR / "openai_sdk.mjs")],
                                       input=json.dumps({"base": base, "cases": cases}).encode(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads(done.stdout)
    assert len(results) == len(cases)
    return results


async def test_the_node_sdk_streams_completes_lists_and_raises(npm_packages: str) -> None:
    async with mock_upstream(reply=REPLY) as up:
        models = [
            {"name": "mock", "adapter": "mock", "chunk_delay_ms": 0, "reply": REPLY},
            up.model("busy", "gpt+fail=99:429"),
            up.model("down", "gpt+fail=99:503"),
            up.model("cut", "gpt+drop_after=2"),
            up.model("open", "gpt+close_after=2"),
        ]
        cases = [
            {"kind": "models"},
            {"kind": "chat", "model": "mock", "stream": True},
            {"kind": "chat", "model": "mock", "stream": False},
            {"kind": "chat", "model": "nope", "stream": True},
            {"kind": "chat", "model": "busy", "stream": True},
            {"kind": "chat", "model": "down", "stream": False},
            {"kind": "chat", "model": "cut", "stream": True},
            {"kind": "chat", "model": "open", "stream": True},
        ]
        async with serve(create_app(upstream_config(models, **RESUME_OFF))) as base:
            got = await run_sdk(npm_packages, base, cases)
    listed, streamed, whole, unknown, busy, down, cut, unended = got
    assert listed == {"ids": ["mock", "busy", "down", "cut", "open"]}
    assert streamed["content"] == REPLY and streamed["finish"] == "stop" and streamed["usage"]["total_tokens"] > 0
    assert whole["content"] == REPLY and whole["finish"] == "stop"
    assert (unknown["error"], unknown["status"]) == ("NotFoundError", 404)
    assert (busy["error"], busy["status"]) == ("RateLimitError", 429)
    assert (down["error"], down["status"]) == ("InternalServerError", 502)
    for result in (cut, unended):  # text came, then the SDK raised: never a truncated answer returned as done
        assert result["error"] == "APIError" and result["code"] == "truncated", result
        assert result["content"] and REPLY.startswith(result["content"]) and result["content"] != REPLY


async def test_a_node_sdk_abort_closes_the_upstream_within_a_second(npm_packages: str) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+delay_ms=200")], **RESUME_OFF)
        async with serve(create_app(config)) as base:
            (result,) = await run_sdk(npm_packages, base, [{"kind": "abort", "model": "gpt"}])
            closed = await up.recorder.wait_closed(0, timeout=5)
            closed_wall = time.time() - (time.monotonic() - closed)  # the node process reports wall-clock time
    assert result["aborted"] is True
    assert not up.recorder.attempts[0].finished
    assert closed_wall - result["at"] / 1000 < 1.0


async def test_vercels_ai_sdk_drives_the_door_unchanged(npm_packages: str) -> None:
    """A harness that knows only OpenAI's API (`ai` + `@ai-sdk/openai-compatible`, tests/node/ai_sdk.mjs)."""
    async with mock_upstream(reply=REPLY) as up:
        models = [{"name": "mock", "adapter": "mock", "chunk_delay_ms": 0, "reply": REPLY},
                  up.model("down", "gpt+fail=99:503"), up.model("cut", "gpt+close_after=2")]
        cases = [{"model": "mock", "stream": True}, {"model": "mock", "stream": False},
                 {"model": "down", "stream": False}, {"model": "cut", "stream": True}]
        async with serve(create_app(upstream_config(models, **RESUME_OFF))) as base:
            with anyio.fail_after(90):
                done = await anyio.run_process([npm_packages, str(NODE_DIR / "ai_sdk.mjs")],
                                               input=json.dumps({"base": base, "cases": cases}).encode(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    streamed, whole, down, cut = json.loads(done.stdout)
    assert streamed == {"text": REPLY, "errors": [], "finish": "stop"}
    assert whole["text"] == REPLY and whole["finish"] == "stop" and whole["usage"] > 0
    assert down["thrown"] == "APICallError" and down["status"] == 502
    assert cut["errors"] == ["the upstream closed the stream before the answer was complete"], cut
    assert cut["finish"] == "error"  # never "stop": the SDK knows the answer is cut
    assert REPLY.startswith(cut["text"]) and cut["text"] != REPLY
