"""The upstream event-stream decoder, as tables: any split of the bytes gives the same events."""

from __future__ import annotations

import pytest

from llm_sse_proxy.adapters.event_stream import EventStreamDecoder
from llm_sse_proxy.proxy.errors import UpstreamMalformed

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
    (b"\xef\xbb\xbfdata: a\n\n", [("message", "a")]),  # one leading BOM is dropped (issue 16)
    (b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [("message", "b")]),  # a second one is a field name's
    (b"data: \xef\xbb\xbfa\n\n", [("message", "\ufeffa")]),  # not at the start: text
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


def test_blank_lines_count_against_the_bound() -> None:
    decoder = EventStreamDecoder(max_event=1000)
    assert decoder.feed(b"\n" * 990 + b"data: a\n\n") == [("message", "a")]  # an event resets the count
    decoder.feed(b"\n" * 1000)
    with pytest.raises(UpstreamMalformed, match="over 1000 bytes without an event"):
        decoder.feed(b"\n")


def test_comments_count_against_the_bound() -> None:
    decoder = EventStreamDecoder(max_event=1000)
    with pytest.raises(UpstreamMalformed, match="without an event"):
        decoder.feed(b": keep-alive\n" * 100)
