"""The opt-in named events, as tables: request names, the tool-call assembler, and their encoding."""

from __future__ import annotations

import pytest

from llm_sse_proxy.proxy.deltas import ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta, Usage
from llm_sse_proxy.proxy.errors import BadRequest, InvalidToolCall, UpstreamMalformed
from llm_sse_proxy.proxy.relay.rich_events import Extras, parse_event_names
from llm_sse_proxy.proxy.relay.sse import encode_event, terminate_payload
from tests.sse_parse import parse_stream

ALL = frozenset({"reasoning", "refusal", "tool_call", "tool_call_delta"})


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], frozenset()),
        ([""], frozenset()),
        (["reasoning", " tool_call "], frozenset({"reasoning", "tool_call"})),
        (["refusal", "refusal"], frozenset({"refusal"})),
        (list(ALL), ALL),
    ],
)
def test_event_names(names: list[str], expected: frozenset[str]) -> None:
    assert parse_event_names(names) == expected


@pytest.mark.parametrize("names", [["thinking"], ["reasoning", "text"], ["Reasoning"], ["message"]])
def test_unknown_event_names_are_refused_with_the_known_ones(names: list[str]) -> None:
    with pytest.raises(BadRequest, match=r"events: unknown event .* \(known: reasoning, refusal, tool_call, tool_call_delta, reset\)"):
        parse_event_names(names)


def events_of(wanted: frozenset[str], deltas: list, *, show_reasoning: bool = True) -> list:
    extras = Extras(wanted, show_reasoning=show_reasoning)
    out = []
    for delta in deltas:
        if isinstance(delta, TextDelta):
            out += extras.close_calls() + [("message", {"text": delta.text})]
        else:
            out += extras.named(delta)
    return out + extras.close_calls()


CALL = [ToolCallDelta(0, "call_a", "get_weather"), ToolCallDelta(0, arguments='{"city":'),
        ToolCallDelta(0, arguments='"Paris"}')]
SECOND = [ToolCallDelta(1, "call_b", "get_time", '{"tz":"CET"}')]
WEATHER = {"index": 0, "id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'}
TIME = {"index": 1, "id": "call_b", "name": "get_time", "arguments": '{"tz":"CET"}'}

TABLE = [
    ("nothing asked: nothing named", frozenset(), [ReasoningDelta("r"), *CALL, RefusalDelta("no")], []),
    ("reasoning", frozenset({"reasoning"}), [ReasoningDelta("a"), ReasoningDelta("b")],
     [("reasoning", {"text": "a"}), ("reasoning", {"text": "b"})]),
    ("tool calls only when complete", frozenset({"tool_call"}), [*CALL, *SECOND],
     [("tool_call", WEATHER), ("tool_call", TIME)]),
    ("text completes an open call", frozenset({"tool_call"}), [*CALL, TextDelta("ok")],
     [("tool_call", WEATHER), ("message", {"text": "ok"})]),
    ("pieces as they come", frozenset({"tool_call_delta"}), CALL,
     [("tool_call_delta", {"index": 0, "id": "call_a", "name": "get_weather", "arguments": ""}),
      ("tool_call_delta", {"index": 0, "arguments": '{"city":'}),
      ("tool_call_delta", {"index": 0, "arguments": '"Paris"}'})]),
    ("pieces, then the whole call", frozenset({"tool_call", "tool_call_delta"}), [*CALL[:1], *SECOND],
     [("tool_call_delta", {"index": 0, "id": "call_a", "name": "get_weather", "arguments": ""}),
      ("tool_call", {**WEATHER, "arguments": "{}"}),
      ("tool_call_delta", {"index": 1, "id": "call_b", "name": "get_time", "arguments": '{"tz":"CET"}'}),
      ("tool_call", TIME)]),
    ("a call without an id is named by its index", frozenset({"tool_call"}), [ToolCallDelta(3, None, "f", "[1]")],
     [("tool_call", {"index": 3, "id": "call_3", "name": "f", "arguments": "[1]"})]),
    ("refusal", frozenset({"refusal"}), [RefusalDelta("I can't"), RefusalDelta(".")],
     [("refusal", {"text": "I can't"}), ("refusal", {"text": "."})]),
]


@pytest.mark.parametrize(("wanted", "deltas", "expected"), [c[1:] for c in TABLE], ids=[c[0] for c in TABLE])
def test_named_events(wanted: frozenset[str], deltas: list, expected: list) -> None:
    assert events_of(wanted, deltas) == expected


def test_a_model_that_drops_reasoning_never_sends_it() -> None:
    assert events_of(ALL, [ReasoningDelta("secret plan")], show_reasoning=False) == []


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([ToolCallDelta(0, "c", "f", '{"city": "Par')], InvalidToolCall),
        ([ToolCallDelta(0, "c", "f", "not json")], InvalidToolCall),
        ([ToolCallDelta(0, "c", None, "{}")], InvalidToolCall),
        ([ToolCallDelta(0, "c", "f", "{}"), ToolCallDelta(1, "d", "g", "{}"), ToolCallDelta(0, arguments="x")],
         UpstreamMalformed),
    ],
)
def test_calls_a_client_cannot_act_on_are_errors(pieces: list, error: type) -> None:
    with pytest.raises(error):
        events_of(frozenset({"tool_call"}), pieces)


def test_the_terminate_reason_says_refusal_to_who_asked() -> None:
    asked, not_asked = Extras(frozenset({"refusal"})), Extras(frozenset())
    asked.named(RefusalDelta("no")), not_asked.named(RefusalDelta("no"))
    assert (asked.reason("stop"), not_asked.reason("stop"), asked.reason("length")) == ("refusal", "stop", "length")


@pytest.mark.parametrize(
    ("event", "payload", "raw"),
    [
        (None, {"text": "a"}, b'id: 4\ndata: {"text":"a"}\n\n'),
        ("reasoning", {"text": "line\nbreak"}, b'id: 4\nevent: reasoning\ndata: {"text":"line\\nbreak"}\n\n'),
        ("tool_call", WEATHER,
         b'id: 4\nevent: tool_call\ndata: {"index":0,"id":"call_a","name":"get_weather",'
         b'"arguments":"{\\"city\\":\\"Paris\\"}"}\n\n'),
    ],
)
def test_named_events_encode_exactly(event: str | None, payload: dict, raw: bytes) -> None:
    assert encode_event(4, payload, event) == raw
    parsed = parse_stream(raw).events[0]
    assert parsed.type == (event or "message")


def test_the_terminate_gains_fields_only_for_a_request_that_asked() -> None:
    usage = Usage(374, 61, reasoning_tokens=17, cached_tokens=256)
    plain = terminate_payload("tool_calls", usage=usage, model="m")
    rich = terminate_payload("tool_calls", usage=usage, model="m", tool_calls=[WEATHER], usage_details=True)
    assert plain == {"action": "terminate", "reason": "tool_calls", "model": "m",
                     "usage": {"prompt_tokens": 374, "completion_tokens": 61, "total_tokens": 435}}
    assert rich == {**plain, "usage": {**plain["usage"], "reasoning_tokens": 17, "cached_tokens": 256},
                    "tool_calls": [WEATHER]}
