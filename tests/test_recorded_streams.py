"""Recorded streams of each native dialect (tests/fixtures/native, sources in SOURCES.md), replayed over
loopback through the adapter: text, reasoning, tool calls, finish reason and usage, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_sse_proxy.proxy.deltas import Usage
from llm_sse_proxy.proxy.errors import UpstreamUnavailable
from tests.adapter_harness import Replay, adapter_for, gather, replaying
from tests.upstream_fixtures import model_at

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "native"
NDJSON = "application/x-ndjson"

CASES = {
    "anthropic_basic.sse": dict(text="Hello!", reason="stop", usage=Usage(25, 15)),
    "anthropic_tool_use.sse": dict(
        text="Okay, let's check the weather for San Francisco, CA:",
        tool_calls=[{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                     "arguments": '{"location": "San Francisco, CA", "unit": "fahrenheit"}'}],
        reason="tool_calls", usage=Usage(472, 89)),
    "anthropic_thinking.sse": dict(
        text="27 * 453 = 12,231",
        reasoning="Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3"
                  "\n3. 27 * 400 = 10,800\n4. 27 * 50 = 1,350\n5. 27 * 3 = 81\n6. 10,800 + 1,350 + 81 = 12,231",
        reason="stop", usage=None),  # the docs' example carries no usage at all
    "anthropic_web_search.sse": dict(  # a server tool (web search) is Anthropic's to run, not a client call
        text="I'll check the current weather in New York City for you.", reason="stop",
        usage=Usage(10682, 510, cached_tokens=0)),
    "gemini_text.sse": dict(text="**It learns patterns from data to make smart decisions.**", reason="stop",
                            usage=Usage(8, 11 + 1103, reasoning_tokens=1103)),
    "gemini_function_call.sse": dict(
        tool_calls=[{"index": 0, "id": "call_0", "name": "getWeather", "arguments": '{"location":"Tokyo"}'}],
        reason="tool_calls", usage=Usage(83, 14 + 104, reasoning_tokens=104)),
    "ollama_chat.ndjson": dict(text="The", reason="stop", usage=Usage(26, 282)),
    "ollama_tools.ndjson": dict(
        tool_calls=[{"index": 0, "id": "call_0", "name": "get_current_weather",
                     "arguments": '{"format":"celsius","location":"Paris, FR"}'}],
        reason="tool_calls", usage=Usage(122, 33)),
}


def dialect_of(name: str) -> str:
    return name.split("_", 1)[0]


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_recorded_stream_gives_exactly_its_content(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    replay = Replay(raw, NDJSON if name.endswith(".ndjson") else "text/event-stream")
    expected = {"text": "", "reasoning": "", "tool_calls": [], **CASES[name]}
    async with replaying(replay) as url, adapter_for(model_at(url, dialect_of(name))) as adapter:
        got = await gather(adapter)
    assert (got.text, got.reasoning, got.tool_calls, got.reason, got.usage) == (
        expected["text"], expected["reasoning"], expected["tool_calls"], expected["reason"], expected["usage"])
    for call in got.tool_calls:
        json.loads(call["arguments"])  # whole calls are valid JSON once assembled
    assert "EqQBCgIYAhIM" not in repr(got.deltas) and "thoughtSignature" not in repr(got.deltas)
    assert not any(d.__class__.__name__ == "TextDelta" and not d.text for d in got.deltas)  # never an empty one


async def test_the_recorded_overloaded_error_event_is_a_retryable_error() -> None:
    replay = Replay((FIXTURES / "anthropic_overloaded.sse").read_bytes())
    async with replaying(replay) as url, adapter_for(model_at(url, "anthropic")) as adapter:
        with pytest.raises(UpstreamUnavailable, match="overloaded_error: Overloaded"):
            await gather(adapter)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_recording_cut_before_its_end_marker_is_truncated(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    marker = {"anthropic": b"event: message_stop", "gemini": b'"finishReason"', "ollama": b'"done":true'}
    cut = raw[: raw.rfind(b"\n", 0, raw.index(marker[dialect_of(name)])) + 1]  # up to the line before it, or nothing
    replay = Replay(cut, NDJSON if name.endswith(".ndjson") else "text/event-stream")
    async with replaying(replay) as url, adapter_for(model_at(url, dialect_of(name))) as adapter:
        with pytest.raises(Exception) as caught:
            await gather(adapter)
    assert type(caught.value).__name__ == "UpstreamTruncated"
