"""Stream and event ids, as tables: what a cursor may look like, and what it means."""

from __future__ import annotations

import pytest

from llm_sse_proxy.proxy.resume.errors import InvalidCursor
from llm_sse_proxy.proxy.resume.ids import MAX_SEQ, Cursor, format_id, is_sid, new_sid, parse_cursor, resume_after

SID = "A" * 11 + "b_-9" + "z" * 7  # 22 URL-safe characters
OTHER = "Q" * 22


def test_new_sids_are_22_urlsafe_characters_and_distinct() -> None:
    sids = {new_sid() for _ in range(1000)}
    assert len(sids) == 1000
    assert all(is_sid(s) for s in sids)


def test_format_then_parse_round_trips() -> None:
    assert parse_cursor(format_id(SID, 17)) == Cursor(SID, 17)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"{SID}:0", Cursor(SID, 0)),
        (f"{SID}:1", Cursor(SID, 1)),
        (f" {SID}:42 ", Cursor(SID, 42)),
        (f"{SID}:{MAX_SEQ}", Cursor(SID, MAX_SEQ)),
        ("0", Cursor(None, 0)),
        ("7", Cursor(None, 7)),
    ],
)
def test_valid_cursors(raw: str, expected: Cursor) -> None:
    assert parse_cursor(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        f"{SID}:",
        f"{SID}:-1",
        f"{SID}:+1",
        f"{SID}:1.5",
        f"{SID}:{MAX_SEQ + 1}",
        f"{SID}:" + "9" * 30,
        "-1",
        "1e3",
        "٣",  # a non-ASCII digit: int() would take it
        f"{SID[:-1]}:1",  # 21 characters
        f"{SID}x:1",  # 23 characters
        f"{SID[:-1]}/:1",
        f"{SID}:1:2",
        ":5",
    ],
)
def test_invalid_cursors_are_refused(raw: str) -> None:
    with pytest.raises(InvalidCursor) as caught:
        parse_cursor(raw)
    assert raw.strip() == "" or raw.strip() not in caught.value.message  # never echoed


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        (None, None, 0),
        ("", None, 0),
        (f"{SID}:5", None, 5),
        (None, f"{SID}:6", 6),
        (f"{SID}:5", f"{SID}:9", 5),  # the header wins
        ("3", None, 3),  # a bare seq is for this stream
        (None, "4", 4),
    ],
)
def test_resume_after(header: str | None, query: str | None, expected: int) -> None:
    assert resume_after(SID, header, query) == expected


def test_a_cursor_of_another_stream_is_refused() -> None:
    with pytest.raises(InvalidCursor):
        resume_after(SID, f"{OTHER}:3", None)
