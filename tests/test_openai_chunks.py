"""The OpenAI-compatible chunk decoder, as a table: every kind a compatible server streams."""

from __future__ import annotations

import json

import pytest

from llm_sse_proxy.adapters.openai_chunks import Chunk, parse_chunk
from llm_sse_proxy.proxy.deltas import ReasoningDelta, RefusalDelta, ToolCallDelta, Usage
from llm_sse_proxy.proxy.errors import UpstreamMalformed, UpstreamUnavailable


def chunk(delta: object = None, finish: str | None = None, **top: object) -> str:
    choice: dict = {"index": 0, "finish_reason": finish}
    if delta is not None:
        choice["delta"] = delta
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice], **top})


CALL_START = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}

TABLE = [
    ("plain text", chunk({"content": "Hi"}), Chunk("Hi")),
    ("role and empty content", chunk({"role": "assistant", "content": ""}), Chunk("")),
    ("finish", chunk({}, "stop"), Chunk(None, "stop")),
    ("DeepSeek and vLLM reasoning_content", chunk({"content": None, "reasoning_content": "We"}),
     Chunk(extras=(ReasoningDelta("We"),))),
    ("OpenRouter and Ollama reasoning", chunk({"role": "assistant", "content": "", "reasoning": "Hmm"}),
     Chunk("", extras=(ReasoningDelta("Hmm"),))),
    ("both names (vLLM's rename): once", chunk({"reasoning_content": "x", "reasoning": "x"}),
     Chunk(extras=(ReasoningDelta("x"),))),
    ("empty reasoning is nothing", chunk({"content": "a", "reasoning_content": ""}), Chunk("a")),
    ("OpenRouter reasoning_details (maybe encrypted) never pass",
     chunk({"reasoning": "r", "reasoning_details": [{"type": "reasoning.encrypted", "data": "c2VjcmV0"}]}),
     Chunk(extras=(ReasoningDelta("r"),))),
    ("refusal", chunk({"refusal": "I'm"}), Chunk(extras=(RefusalDelta("I'm"),))),
    ("refusal null", chunk({"role": "assistant", "content": None, "refusal": None}), Chunk()),
    ("tool call start", chunk({"tool_calls": [CALL_START]}),
     Chunk(extras=(ToolCallDelta(0, "call_1", "get_weather", ""),))),
    ("tool call arguments", chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\""}}]}),
     Chunk(extras=(ToolCallDelta(0, None, None, "{\""),))),
    ("two whole calls in one chunk (Ollama)",
     chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}},
                           {"id": "b", "function": {"name": "g", "arguments": {"x": 1}}}]}),
     Chunk(extras=(ToolCallDelta(0, "a", "f", "{}"), ToolCallDelta(1, "b", "g", '{"x":1}')))),
    ("Gemini's thought signature on a call is dropped",
     chunk({"tool_calls": [{**CALL_START, "extra_content": {"google": {"thought_signature": "sig"}}}]}),
     Chunk(extras=(ToolCallDelta(0, "call_1", "get_weather", ""),))),
    ("Mistral content parts", chunk({"content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}),
     Chunk("Hello")),
    ("Mistral thinking parts",
     chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Let me see."}]},
                        {"type": "text", "text": "Yes"}]}),
     Chunk("Yes", extras=(ReasoningDelta("Let me see."),))),
    ("Mistral parts without text", chunk({"content": [{"type": "image_url", "image_url": "u"}]}), Chunk()),
    ("Azure content-filter annotation: no delta, skipped",
     chunk(None, content_filter_results={}, content_filter_offsets={"check_offset": 44}), Chunk()),
    ("Azure filter ending the answer", chunk(None, "content_filter"), Chunk(None, "content_filter")),
    ("Azure prompt filter results", json.dumps({"choices": [], "prompt_filter_results": []}), Chunk()),
    ("usage with details",
     json.dumps({"choices": [], "usage": {"prompt_tokens": 374, "completion_tokens": 61, "total_tokens": 435,
                                          "prompt_tokens_details": {"cached_tokens": 256},
                                          "completion_tokens_details": {"reasoning_tokens": 17}}}),
     Chunk(usage=Usage(374, 61, 17, 256))),
    ("usage without details", json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
     Chunk(usage=Usage(1, 2))),
    ("[DONE]", "[DONE]", Chunk(done=True)),
]


@pytest.mark.parametrize(("data", "expected"), [case[1:] for case in TABLE], ids=[case[0] for case in TABLE])
def test_parse_chunk(data: str, expected: Chunk) -> None:
    assert parse_chunk(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        chunk("not a dict"),
        chunk({"tool_calls": "no"}),
        chunk({"tool_calls": [{"index": 0}]}),
        chunk({"tool_calls": [{"index": "0", "function": {}}]}),
        chunk({"tool_calls": [{"index": 0, "id": 5, "function": {}}]}),
        json.dumps({"choices": ["x"]}),
    ],
)
def test_malformed_chunks(data: str) -> None:
    with pytest.raises(UpstreamMalformed):
        parse_chunk(data)


def test_an_in_band_error_keeps_the_upstream_message() -> None:
    with pytest.raises(UpstreamUnavailable, match="overloaded"):
        parse_chunk(json.dumps({"error": {"message": "overloaded", "type": "server_error"}}))
