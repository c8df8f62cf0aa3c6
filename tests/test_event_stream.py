"""The upstream event-stream decoder, as tables: any split of the bytes gives the same events."""

from __future__ import annotations

import pytest

from adapters.event_stream import EventStreamDecoder

CASES = [
    (b"data: a\n\n", [("message", "a")]),
    (b"data:a\r\n\r\n", [("message", "a")]),
    (b"data: a\r\rdata: b\r\r", [("message", "a"), ("message", "b")]),
    (b"data: one\ndata: two\n\n", [("message", "one\ntwo")]),
    (b": keep-alive\n\ndata: x\n\n", [("message", "x")]),
    (b"event: delta\ndata: {}\n\n", [("delta", "{}")]),
    (b"data:  two spaces\n\n", [("message", " two spaces")]),
    (b'data: {"t":"a\xe2\x80\xa8b"}\n\n', [("message", '{"t":"a\u2028b"}')]),
    (b"data: \xf0\x9f\x8e\x89\n\n", [("message", "🎉")]),
    (b"data: unterminated\n", []),
    (b"id: 3\nretry: 10\n\n", []),
    (b"data\n\n", [("message", "")]),
]


@pytest.mark.parametrize(("raw", "events"), CASES)
def test_whole(raw: bytes, events: list) -> None:
    assert EventStreamDecoder().feed(raw) == events


@pytest.mark.parametrize(("raw", "events"), CASES)
def test_every_split_point(raw: bytes, events: list) -> None:
    for cut in range(1, len(raw)):
        decoder = EventStreamDecoder()
        assert decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) == events, cut


@pytest.mark.parametrize(("raw", "events"), CASES)
def test_byte_by_byte(raw: bytes, events: list) -> None:
    decoder = EventStreamDecoder()
    got = []
    for i in range(len(raw)):
        got += decoder.feed(raw[i : i + 1])
    assert got == events
