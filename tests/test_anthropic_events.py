"""The Anthropic door's pure parts: the request conversion and the event encoding, as tables; the encoder's
bytes read back by the proxy's own Anthropic adapter (the same format, from the other side); and the
stream's wire bytes through uvicorn (every event named as its `type`, pings as Anthropic's events)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_sse_proxy.adapters.anthropic import MessageState
from llm_sse_proxy.adapters.event_stream import EventStreamDecoder
from llm_sse_proxy.proxy.deltas import (
    Finish, ImagePart, Message, ReasoningDelta, TextDelta, TextPart, ToolCall, ToolCallDelta, Usage,
)
from llm_sse_proxy.proxy.doors.anthropic.events import MessageBuilder, MessageEncoder, error_status, usage_fields
from llm_sse_proxy.proxy.doors.anthropic.request import parse_messages_body
from llm_sse_proxy.proxy.errors import BadRequest
from tests.conftest import RESUME_OFF, make_config, proxy, read_stream

USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42, "reasoning_tokens": 5, "cached_tokens": 10}


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event; the name must be the data's type."""
    found = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            assert name.startswith("event: ") and data.startswith("data: ")
            found.append((name[7:], json.loads(data[6:])))
            assert found[-1][1]["type"] == found[-1][0]
    return found


def test_the_history_converts_turn_by_turn() -> None:
    parsed = parse_messages_body(body(system=[{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
                                      messages=[
        {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                          {"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "cold", "is_error": True},
                                     {"type": "text", "text": "And?"}]},
    ], metadata={"user_id": "u1"}, stop_sequences=["END"], temperature=0.5, top_p=0.9))
    assert list(parsed.chat.request.messages) == [
        Message("system", "Be brief."),
        Message("user", (TextPart("Weather?"), ImagePart("data:image/png;base64,AAA"))),
        Message("assistant", "Checking.", tool_calls=(ToolCall("t1", "get_weather", '{"city": "Oslo"}'),)),
        Message("tool", "Error: cold", tool_call_id="t1"),
        Message("user", (TextPart("And?"),)),
    ]
    request = parsed.chat.request
    assert (request.max_tokens, request.stop, request.temperature, request.top_p) == (50, ("END",), 0.5, 0.9)
    assert parsed.chat.model == "m" and not parsed.chat.stream and not parsed.thinking


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"name": "f"}),
])
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    assert parse_messages_body(body(tools=tools, tool_choice=choice)).chat.request.tool_choice == expected


@pytest.mark.parametrize(("thinking", "shown"), [
    ({"type": "enabled", "budget_tokens": 1024}, True), ({"type": "adaptive"}, True), ({"type": "disabled"}, False),
])
def test_thinking_shows_the_reasoning_when_on(thinking: dict[str, Any], shown: bool) -> None:
    assert parse_messages_body(body(thinking=thinking, stream=True)).thinking is shown


@pytest.mark.parametrize(("fields", "named"), [
    ({"top_k": 5, "service_tier": "auto"}, "service_tier, top_k: not supported"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"tool_choice": {"type": "any", "disable_parallel_tool_use": True},
      "tools": [{"name": "f", "input_schema": {}}]}, "tool_choice.disable_parallel_tool_use"),
    ({"tool_choice": {"type": "any"}}, "tool_choice: needs tools"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking.budget_tokens"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]},
     "tool_use and thinking blocks belong to assistant messages"),
    ({"messages": []}, "messages"),
])
def test_what_does_not_map_is_a_400_naming_it(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(BadRequest, match=named.replace(".", r"\.")):
        parse_messages_body(body(**fields))


def test_a_stream_is_blocks_in_order_and_a_message_delta_with_usage() -> None:
    encoder = MessageEncoder("msg_1")
    raw = b"".join([encoder.start("gpt"), encoder.thinking("Hm"), encoder.thinking("m."), encoder.text("Hi"),
                    encoder.text(" there"), encoder.tool_piece({"index": 0, "id": "c0", "name": "f", "arguments": ""}),
                    encoder.tool_piece({"index": 0, "arguments": '{"a":'}), encoder.tool_piece({"index": 0, "arguments": "1}"}),
                    encoder.tool_piece({"index": 1, "id": "c1", "name": "g", "arguments": "{}"}),
                    encoder.end({"action": "terminate", "reason": "tool_calls", "usage": USAGE})])
    found = events(raw)
    assert [name for name, _ in found] == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert found[0][1]["message"]["model"] == "gpt" and found[0][1]["message"]["id"] == "msg_1"
    starts = [data["content_block"] for name, data in found if name == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "text", "tool_use", "tool_use"]
    assert (starts[2]["id"], starts[2]["name"], starts[3]["id"]) == ("c0", "f", "c1")
    assert [data["index"] for name, data in found if name.startswith("content_block")] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 3
    assert found[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                            "usage": {"input_tokens": 20, "output_tokens": 12, "cache_read_input_tokens": 10,
                                      "output_tokens_details": {"thinking_tokens": 5}}}


def test_the_adapter_reads_back_what_the_door_writes() -> None:
    """The proxy's Anthropic adapter, fed the door's bytes, yields the deltas the door was given."""
    encoder = MessageEncoder("msg_1")
    raw = b"".join([encoder.start("m"), encoder.thinking("Think."), encoder.text("Hel"), encoder.text("lo\u2028!"),
                    encoder.tool_piece({"index": 0, "id": "c0", "name": "f", "arguments": '{"x":1}'}),
                    encoder.end({"action": "terminate", "reason": "tool_calls",
                                 "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})])
    state, decoder = MessageState(), EventStreamDecoder()
    deltas = [delta for _, data in decoder.feed(raw) for delta in state.read(data)]
    assert deltas == [ReasoningDelta("Think."), TextDelta("Hel"), TextDelta("lo\u2028!"),
                      ToolCallDelta(0, id="c0", name="f"), ToolCallDelta(0, arguments='{"x":1}'),
                      Finish("tool_calls", Usage(9, 3))]


def test_a_failed_stream_ends_with_an_error_event() -> None:
    [(name, data)] = events(MessageEncoder("m").error(502, "truncated", "the upstream ended early"))
    assert (name, data) == ("error", {"type": "error", "error": {"type": "api_error",
                                                                 "message": "truncated: the upstream ended early"}})


@pytest.mark.parametrize(("kind", "upstream", "status"), [
    ("upstream_rejected", 400, 400), ("upstream_unavailable", 529, 529), ("rate_limited", 429, 429),
    ("upstream_unavailable", 503, 502), ("timeout", None, 504), ("shutdown", None, 503),
])
def test_error_status_before_the_stream(kind: str, upstream: int | None, status: int) -> None:
    assert error_status(kind, upstream) == status


def test_one_message_gathers_blocks_and_parses_tool_input() -> None:
    builder = MessageBuilder("msg_2")
    for payload, event in [({"text": "Hm"}, "reasoning"), ({"text": "A"}, None), ({"text": "B"}, None),
                           ({"index": 0, "id": "c0", "name": "f", "arguments": '{"a": [1]}'}, "tool_call")]:
        builder.add(payload, event)
    message = builder.message("gpt", {"action": "terminate", "reason": "stop"})
    assert message["content"] == [{"type": "thinking", "thinking": "Hm", "signature": ""}, {"type": "text", "text": "AB"},
                                  {"type": "tool_use", "id": "c0", "name": "f", "input": {"a": [1]}}]
    assert (message["stop_reason"], message["usage"]) == ("end_turn", usage_fields(None))


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_on_the_wire_every_event_is_named_and_pings_are_anthropic_events() -> None:
    config = make_config([{"name": "slow", "adapter": "mock", "reply": "abcdefgh", "chunk_chars": 4,
                           "chunk_delay_ms": 400}], server={"ping_interval": 0.1}, **RESUME_OFF)
    async with proxy(config) as client:
        response, parsed = await read_stream(client, "POST", "/v1/messages", headers={"anthropic-version": "2023-06-01"},
                                             json={"model": "slow", "max_tokens": 10, "stream": True,
                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"] == response.headers["x-request-id"]
    assert not parsed.comments and not parsed.leftover
    assert all(json.loads(event.data)["type"] == event.type for event in parsed.events)
    names = [event.type for event in parsed.events if event.type != "ping"]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert [e.type for e in parsed.events].count("ping") >= 2  # the one after message_start, and keep-alives
