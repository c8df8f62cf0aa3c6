"""The OpenAI door's encoding, as tables: pure functions of the relay's events."""

from __future__ import annotations

import json

import pytest

from llm_sse_proxy.proxy.doors.openai.chunks import (
    DONE,
    ChunkEncoder,
    CompletionBuilder,
    error_status,
    finish_reason,
    terminate_error,
    tool_call_piece,
    usage_fields,
)
from tests.test_sse import AWKWARD

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


def data_of(chunk: bytes) -> list:
    """The JSON of each `data:` line, the way the SDKs' decoders read it (split on blank lines)."""
    events = [e for e in chunk.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e and "\r" not in e for e in events), chunk
    return [e[6:] if e == "data: [DONE]" else json.loads(e[6:]) for e in events]


@pytest.mark.parametrize("text", AWKWARD)
def test_a_text_chunk_is_one_line_of_openai_json(text: str) -> None:
    (chunk,) = data_of(ChunkEncoder("chatcmpl-1", 7, "m").text(text))
    assert chunk == {**HEAD, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    assert "\u2028" not in ChunkEncoder("chatcmpl-1", 7, "m").text(text).decode(errors="replace")


@pytest.mark.parametrize(("event", "payload", "delta"), [
    ("reasoning", {"text": "hm"}, {"reasoning_content": "hm"}),
    ("refusal", {"text": "no"}, {"refusal": "no"}),
    ("tool_call_delta", {"index": 0, "id": "c1", "name": "f", "arguments": ""},
     {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"arguments": "", "name": "f"}}]}),
    ("tool_call_delta", {"index": 1, "arguments": '{"a"'},
     {"tool_calls": [{"index": 1, "function": {"arguments": '{"a"'}}]}),
])
def test_named_events_become_openai_delta_fields(event: str, payload: dict, delta: dict) -> None:
    chunk = ChunkEncoder("chatcmpl-1", 7, "m").named(event, payload)
    assert chunk is not None and data_of(chunk)[0]["choices"][0]["delta"] == delta


def test_an_event_the_door_does_not_carry_is_dropped() -> None:
    assert ChunkEncoder("c", 1, "m").named("tool_call", {"index": 0, "id": "c", "name": "f", "arguments": "{}"}) is None


@pytest.mark.parametrize(("include_usage", "usage", "expected"), [
    (False, {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, 2),
    (True, {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, 3),
    (True, None, 2),
])
def test_the_end_is_finish_then_usage_if_asked_then_done(include_usage: bool, usage: dict | None, expected: int) -> None:
    terminate = {"action": "terminate", "reason": "length", **({"usage": usage} if usage else {})}
    chunks = data_of(ChunkEncoder("chatcmpl-1", 7, "m").end(terminate, include_usage))
    assert len(chunks) == expected and chunks[-1] == "[DONE]"
    assert chunks[0]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    if expected == 3:
        assert chunks[1] == {**HEAD, "choices": [], "usage": usage}


def test_an_error_chunk_has_no_done() -> None:
    chunk = ChunkEncoder("c", 1, "m").error("truncated", "cut")
    assert DONE not in chunk
    assert data_of(chunk) == [{"error": {"message": "cut", "type": "server_error", "param": None, "code": "truncated"}}]


@pytest.mark.parametrize(("reason", "expected"), [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("content_filter", "content_filter"),
    ("refusal", "stop"), ("pause_turn", "stop"),
])
def test_finish_reasons(reason: str, expected: str) -> None:
    assert finish_reason(reason) == expected


@pytest.mark.parametrize(("error_type", "upstream_status", "status"), [
    ("upstream_unavailable", 429, 429), ("upstream_rejected", 400, 400), ("upstream_rejected", 422, 422),
    ("upstream_rejected", 401, 502), ("upstream_rejected", 404, 502), ("upstream_unavailable", 503, 502),
    ("timeout", None, 504), ("truncated", None, 502), ("shutdown", None, 503), ("internal_error", None, 502),
])
def test_error_statuses(error_type: str, upstream_status: int | None, status: int) -> None:
    assert error_status(error_type, upstream_status) == status


@pytest.mark.parametrize(("terminate", "failure"), [
    ({"reason": "stop"}, None),
    ({"reason": "error", "error": {"type": "timeout", "message": "slow"}}, ("timeout", "slow")),
    ({"reason": "shutdown"}, ("shutdown", "the proxy is shutting down; send the request again")),
])
def test_terminate_error(terminate: dict, failure: tuple | None) -> None:
    assert terminate_error(terminate) == failure


def test_usage_details_take_openai_names() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14, "reasoning_tokens": 4, "cached_tokens": 2}
    assert usage_fields(usage) == {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14,
                                   "completion_tokens_details": {"reasoning_tokens": 4},
                                   "prompt_tokens_details": {"cached_tokens": 2}}


def test_a_first_tool_call_piece_without_a_name_still_has_its_id() -> None:
    assert tool_call_piece({"index": 0, "id": "c", "arguments": ""}) == {
        "index": 0, "id": "c", "type": "function", "function": {"arguments": ""}}


@pytest.mark.parametrize(("events", "message"), [
    ([({"text": "a"}, None), ({"text": "b"}, None)], {"role": "assistant", "content": "ab"}),
    ([], {"role": "assistant", "content": ""}),
    ([({"text": "t"}, "reasoning"), ({"text": "x"}, None)], {"role": "assistant", "content": "x", "reasoning_content": "t"}),
    ([({"text": "no"}, "refusal")], {"role": "assistant", "content": None, "refusal": "no"}),
    ([({"index": 0, "id": "c", "name": "f", "arguments": "{}"}, "tool_call")],
     {"role": "assistant", "content": None,
      "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
])
def test_one_completion_gathers_the_events(events: list, message: dict) -> None:
    builder = CompletionBuilder("chatcmpl-1", 7, "m")
    for payload, event in events:
        builder.add(payload, event)
    completion = builder.completion({"reason": "stop", "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                                 "total_tokens": 2}})
    assert completion["choices"] == [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]
    assert completion["object"] == "chat.completion" and completion["usage"]["total_tokens"] == 2
