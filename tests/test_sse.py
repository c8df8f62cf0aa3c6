"""The SSE encoder, as a table: whatever the text, a WHATWG parser reads back exactly what went in."""

from __future__ import annotations

import json

import pytest

from llm_sse_proxy.proxy.deltas import Usage
from llm_sse_proxy.proxy.relay.sse import PING, encode_event, terminate_payload, text_payload
from tests.sse_parse import parse_stream

AWKWARD = [
    "plain",
    "line one\nline two",
    "carriage\rreturn",
    "crlf\r\nend",
    "\n\n\n",
    'quotes " and \\ backslash',
    "data: not a field\n\nid: 9",
    ": not a comment",
    "unicode é ü ß 中文 العربية",
    "emoji 🎉👩‍👩‍👧 flags 🇫🇷",
    "separators \u2028 and \u2029",
    "nul \x00 and bell \x07",
    "x" * 65536,
]


@pytest.mark.parametrize("text", AWKWARD)
def test_text_round_trips_exactly(text: str) -> None:
    raw = encode_event(7, text_payload(text))
    parsed = parse_stream(raw)
    assert [json.loads(e.data) for e in parsed.events] == [{"text": text}]
    assert parsed.events[0].id == "7"
    assert parsed.leftover == ""


@pytest.mark.parametrize("text", AWKWARD)
def test_an_event_is_exactly_three_lines(text: str) -> None:
    raw = encode_event(1, text_payload(text))
    assert raw.endswith(b"\n\n")
    lines = raw[:-2].split(b"\n")
    assert [line.split(b":", 1)[0] for line in lines] == [b"id", b"data"]
    assert b"\r" not in raw and b"\xe2\x80\xa8" not in raw and b"\xe2\x80\xa9" not in raw


EVERY_CHARACTER = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


@pytest.mark.parametrize("text", [*AWKWARD, EVERY_CHARACTER])
def test_the_fast_encoder_writes_what_the_stdlib_writes(text: str) -> None:
    expected = json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":")).encode()
    expected = expected.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    assert encode_event(3, text_payload(text)) == b"id: 3\ndata: " + expected + b"\n\n"


def test_lone_surrogate_is_escaped_so_the_browser_can_rejoin_it() -> None:
    halves = "🎉".encode("utf-16-le")
    high, low = halves[:2].decode("utf-16-le", "surrogatepass"), halves[2:].decode("utf-16-le", "surrogatepass")
    raw = encode_event(1, text_payload(high)) + encode_event(2, text_payload(low))
    events = parse_stream(raw).events
    joined = "".join(json.loads(e.data)["text"] for e in events)
    assert joined.encode("utf-16", "surrogatepass").decode("utf-16") == "🎉"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"action": "terminate", "reason": "stop"}),
        ({"model": "m"}, {"action": "terminate", "reason": "stop", "model": "m"}),
        (
            {"usage": Usage(3, 4)},
            {"action": "terminate", "reason": "stop",
             "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
        ),
        (
            {"error": ("timeout", "slow")},
            {"action": "terminate", "reason": "stop", "error": {"type": "timeout", "message": "slow"}},
        ),
    ],
)
def test_terminate_payload(kwargs: dict, expected: dict) -> None:
    assert terminate_payload("stop", **kwargs) == expected


def test_ping_is_a_comment_that_dispatches_nothing() -> None:
    parsed = parse_stream(PING)
    assert parsed.events == [] and parsed.comments == [" ping"]
