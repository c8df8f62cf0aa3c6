"""The native dialects' pure decoding, in tables: one event or line in, deltas or an error out."""

from __future__ import annotations

import json

import httpx2
import pytest

from llm_sse_proxy.adapters.anthropic import MessageState
from llm_sse_proxy.adapters.anthropic import usage_of as anthropic_usage
from llm_sse_proxy.adapters.gemini import AnswerState, retry_delay
from llm_sse_proxy.adapters.ndjson import LineDecoder
from llm_sse_proxy.adapters.ollama import ChatState
from llm_sse_proxy.proxy.deltas import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from llm_sse_proxy.proxy.errors import UpstreamMalformed, UpstreamRejected, UpstreamTruncated, UpstreamUnavailable


def anthropic(*events: dict) -> list:
    state, out = MessageState(), []
    for event in events:
        out += list(state.read(json.dumps(event)))
    return out


def stop(reason: str) -> list[dict]:
    return [{"type": "message_delta", "delta": {"stop_reason": reason}}, {"type": "message_stop"}]


@pytest.mark.parametrize(("stop_reason", "reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("pause_turn", "pause_turn"),  # a reason added later passes through
])
def test_anthropic_stop_reasons(stop_reason: str, reason: str) -> None:
    assert anthropic(*stop(stop_reason)) == [Finish(reason)]


def test_anthropic_message_stop_without_a_stop_reason_is_truncated() -> None:
    with pytest.raises(UpstreamTruncated):
        anthropic({"type": "message_stop"})


@pytest.mark.parametrize(("usage", "expected"), [
    ({"input_tokens": 10, "output_tokens": 5}, Usage(10, 5)),
    ({"input_tokens": 10, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 5},
     Usage(1110, 5, cached_tokens=1000)),
    ({"output_tokens": 5}, None),  # no input count: no usage rather than a wrong one
    ({"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}, Usage(10, 5)),
])
def test_anthropic_usage(usage: dict, expected: Usage | None) -> None:
    assert anthropic_usage(usage) == expected


def test_anthropic_cumulative_usage_takes_the_last_counts() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 7, "cache_read_input_tokens": 3,
                                                            "output_tokens": 1}}}
    deltas = [{"type": "message_delta", "delta": {}, "usage": {"output_tokens": 20}},
              {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}}]
    assert anthropic(start, *deltas, {"type": "message_stop"}) == [Finish("stop", Usage(10, 42, cached_tokens=3))]


@pytest.mark.parametrize(("block", "delta", "expected"), [
    ({"type": "text", "text": ""}, {"type": "text_delta", "text": "hi"}, [TextDelta("hi")]),
    ({"type": "text", "text": ""}, {"type": "text_delta", "text": ""}, []),  # never an empty delta
    ({"type": "thinking", "thinking": ""}, {"type": "thinking_delta", "thinking": "hmm"}, [ReasoningDelta("hmm")]),
    ({"type": "thinking", "thinking": ""}, {"type": "signature_delta", "signature": "EqQBsecret"}, []),
    ({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}, {"type": "input_json_delta", "partial_json": '{"a"'},
     [ToolCallDelta(0, "toolu_1", "f"), ToolCallDelta(0, arguments='{"a"')]),
    ({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
     {"type": "input_json_delta", "partial_json": '{"query"'}, []),  # Anthropic runs it, not the client
    ({"type": "text", "text": ""}, {"type": "citations_delta", "citation": {"cited_text": "x"}}, []),
    ({"type": "redacted_thinking", "data": "EmwKAhgBEgy"}, {"type": "future_delta"}, []),
])
def test_anthropic_blocks(block: dict, delta: dict, expected: list) -> None:
    got = anthropic({"type": "content_block_start", "index": 0, "content_block": block},
                    {"type": "content_block_delta", "index": 0, "delta": delta})
    assert got == expected


def test_anthropic_tool_calls_are_numbered_apart_from_content_blocks() -> None:
    got = anthropic(*({"type": "content_block_start", "index": i, "content_block": b} for i, b in enumerate([
        {"type": "text", "text": ""}, {"type": "tool_use", "id": "a", "name": "f"}, {"type": "tool_use", "id": "b", "name": "g"}])))
    assert got == [ToolCallDelta(0, "a", "f"), ToolCallDelta(1, "b", "g")]


@pytest.mark.parametrize(("error", "kind"), [
    ({"type": "overloaded_error", "message": "Overloaded"}, UpstreamUnavailable),
    ({"type": "api_error", "message": "Internal"}, UpstreamUnavailable),
    ({"type": "rate_limit_error", "message": "slow down"}, UpstreamUnavailable),
    ({"type": "invalid_request_error", "message": "bad"}, UpstreamRejected),
    ("not an object", UpstreamRejected),
])
def test_anthropic_error_events(error: object, kind: type) -> None:
    with pytest.raises(kind):
        anthropic({"type": "error", "error": error})


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '{"type": "content_block_delta", "index": 0}'])
def test_anthropic_malformed_events(data: str) -> None:
    with pytest.raises(UpstreamMalformed):
        list(MessageState().read(data))


def gemini(*chunks: dict) -> list:
    state, out = AnswerState(), []
    for chunk in chunks:
        out += list(state.read(json.dumps(chunk)))
    return out


def candidate(parts: list[dict], finish: str | None = None) -> dict:
    return {"candidates": [{"content": {"parts": parts, "role": "model"}, **({"finishReason": finish} if finish else {})}]}


@pytest.mark.parametrize(("finish", "reason"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
    ("OTHER", "other"),
])
def test_gemini_finish_reasons(finish: str, reason: str) -> None:
    assert gemini(candidate([{"text": "a"}], finish)) == [TextDelta("a"), Finish(reason)]


@pytest.mark.parametrize(("parts", "expected"), [
    ([{"text": "I think", "thought": True}, {"text": "Answer"}], [ReasoningDelta("I think"), TextDelta("Answer")]),
    ([{"text": "", "thoughtSignature": "CiIBsig"}], []),
    ([{"functionCall": {"name": "f", "args": {"x": [1, "é"]}}, "thoughtSignature": "CiIB"}],
     [ToolCallDelta(0, "call_0", "f", '{"x":[1,"é"]}')]),
    ([{"functionCall": {"id": "fc-1", "name": "f"}}, {"functionCall": {"name": "g", "args": {}}}],
     [ToolCallDelta(0, "fc-1", "f", "{}"), ToolCallDelta(1, "call_1", "g", "{}")]),
])
def test_gemini_parts(parts: list[dict], expected: list) -> None:
    assert gemini(candidate(parts)) == expected


def test_gemini_a_function_call_makes_stop_tool_calls_and_usage_comes_with_the_finish() -> None:
    usage = {"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 9,
                               "cachedContentTokenCount": 4}}
    got = gemini(candidate([{"functionCall": {"name": "f", "args": {}}}]), {**candidate([], "STOP"), **usage})
    assert got[-1] == Finish("tool_calls", Usage(5, 11, reasoning_tokens=9, cached_tokens=4))


def test_gemini_a_blocked_prompt_ends_with_content_filter() -> None:
    assert gemini({"promptFeedback": {"blockReason": "SAFETY"}}) == [Finish("content_filter")]


@pytest.mark.parametrize(("code", "kind"), [(503, UpstreamUnavailable), (429, UpstreamUnavailable),
                                            (400, UpstreamRejected), (None, UpstreamRejected)])
def test_gemini_error_chunks(code: int | None, kind: type) -> None:
    with pytest.raises(kind, match="high demand"):
        gemini({"error": {"code": code, "message": "high demand", "status": "UNAVAILABLE"}})


@pytest.mark.parametrize(("body", "seconds"), [
    ({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s"}]}}, 34.4),
    ([{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]}}], 2.0),
    ({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"}]}}, None),
    ({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}]}}, None),
    (None, None),
])
def test_gemini_retry_delay_from_retry_info(body: object, seconds: float | None) -> None:
    assert retry_delay(body, httpx2.Headers()) == seconds


def ollama(*lines: dict) -> list:
    state, out = ChatState(), []
    for line in lines:
        out += list(state.read(json.dumps(line).encode()))
    return out


@pytest.mark.parametrize(("done_reason", "reason"), [("stop", "stop"), ("length", "length"), (None, "stop"),
                                                     ("unload", "unload")])
def test_ollama_done_reasons(done_reason: str | None, reason: str) -> None:
    final = {"done": True, "prompt_eval_count": 3, "eval_count": 4, **({"done_reason": done_reason} if done_reason else {})}
    assert ollama(final) == [Finish(reason, Usage(3, 4))]


def test_ollama_thinking_content_and_tool_calls() -> None:
    got = ollama({"message": {"role": "assistant", "thinking": "hmm", "content": ""}, "done": False},
                 {"message": {"role": "assistant", "content": "Hi"}, "done": False},
                 {"message": {"role": "assistant", "content": "", "tool_calls": [
                     {"function": {"name": "f", "arguments": {"a": 1}}},
                     {"id": "call_x", "function": {"index": 1, "name": "g", "arguments": {}}}]}, "done": False},
                 {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"})
    assert got == [ReasoningDelta("hmm"), TextDelta("Hi"), ToolCallDelta(0, "call_0", "f", '{"a":1}'),
                   ToolCallDelta(1, "call_x", "g", "{}"), Finish("tool_calls")]


@pytest.mark.parametrize(("line", "kind"), [(b'{"error": "model runner crashed"}', UpstreamUnavailable),
                                            (b"{not json", UpstreamMalformed), (b"[]", UpstreamMalformed),
                                            (b'{"message": {"tool_calls": [{"nofunction": 1}]}}', UpstreamMalformed)])
def test_ollama_bad_lines(line: bytes, kind: type) -> None:
    with pytest.raises(kind):
        list(ChatState().read(line))


def test_the_line_decoder_splits_at_lf_only_and_skips_blank_lines() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"a": "x\xe2\x80\xa8y"}\r\n\n{"b"') == [b'{"a": "x\xe2\x80\xa8y"}\r']
    assert decoder.feed(b": 1}\n") == [b'{"b": 1}']
    assert decoder.feed(b'{"c": 2}') == [] and decoder.rest() == b'{"c": 2}'


@pytest.mark.parametrize("pieces", [[b"x" * 600, b"x" * 600], [b"x" * 1500 + b"\n"]])
def test_the_line_decoder_bounds_a_line(pieces: list[bytes]) -> None:
    decoder = LineDecoder(max_line=1024)
    with pytest.raises(UpstreamMalformed, match="longer than 1024"):
        for piece in pieces:
            decoder.feed(piece)
