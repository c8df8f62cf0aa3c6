"""splice(): the seam of a continued answer. A table, properties over generated answers, and the known limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_sse_proxy.proxy.relay.splice import MAX_ECHO, MIN_ECHO, RESTART_PROBE, Seam, prefill, splice

ANSWER = "The quick brown fox jumps over the lazy dog, and then it naps in the warm afternoon sun."


@pytest.mark.parametrize(("sent", "continuation", "expected"), [
    # an exact continuation of the prefill, which re-emits the whitespace the prefill lost
    ("The quick ", " brown fox", Seam("brown fox", 1)),
    ("The quick\n\n", "\n\nbrown", Seam("brown", 2)),
    ("The quick", " brown fox", Seam(" brown fox")),
    ("The qui", "ck brown", Seam("ck brown")),  # a cut mid-word, continued mid-word
    # the model repeats the last words (an echo): dropped
    ("The quick brown ", "brown fox", Seam("fox", 6)),
    ("The quick brown", "brown fox", Seam(" fox", 5)),
    ("The quick brown fox", "quick brown fox jumps", Seam(" jumps", 15)),
    ("over the lazy dog", "e lazy dog, and", Seam(", and", 10)),  # >= 8 characters: dropped even mid-word
    # whitespace only: never an echo, only the whitespace rule
    ("a ", " ", Seam("", 1)),
    ("a", " ", Seam(" ")),
    # nothing, or nothing in common
    ("", "The quick", Seam("The quick")),
    ("The quick ", "", Seam("")),
    ("日本語の ", "テキスト", Seam("テキスト")),
    ("emoji 😀 ", "😀 again", Seam("again", 2)),
    # the model started over
    (ANSWER[:40], ANSWER, Seam("", restarted=True)),
    (ANSWER[:RESTART_PROBE], ANSWER, Seam("", restarted=True)),
])
def test_splice_table(sent: str, continuation: str, expected: Seam) -> None:
    assert splice(sent, continuation) == expected


def test_prefill_strips_trailing_whitespace_only() -> None:
    assert prefill("  Hello, world \n\t ") == "  Hello, world"


def test_a_short_answer_that_starts_over_is_an_echo_of_all_of_it() -> None:
    # Below RESTART_PROBE characters a restart cannot be told from an echo; the echo rule gives the same text.
    sent = ANSWER[:20]
    assert len(sent) < RESTART_PROBE
    assert sent + splice(sent, ANSWER).emit == ANSWER


# Known limits: each is a decision; a change to the rules should make one of these fail, on purpose.

def test_limit_a_genuine_repetition_at_the_seam_is_dropped() -> None:
    answer, sent = "it was very very good", "it was very "
    assert sent + splice(sent, answer[len(prefill(sent)):]).emit == answer  # " very good": exact, kept
    # The same, with the space left out: an echo of "very " and a repetition look alike.
    assert sent + splice(sent, "very good").emit == "it was very good"


def test_limit_a_short_echo_from_mid_word_is_kept() -> None:
    sent = "The quick brown"
    assert splice(sent, "own fox") == Seam("own fox")  # "own" is < MIN_ECHO and does not start a word
    assert len("own") < MIN_ECHO


def test_limit_whitespace_the_model_left_out_is_missing() -> None:
    sent, answer = "The quick ", "The quick brown"
    assert sent + splice(sent, "brown").emit == answer  # fine: the client shows the space already
    sent = "The quick"  # the cut fell before the space, and the model glued the next word on
    assert sent + splice(sent, "brown").emit == "The quickbrown"


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
         "kilo", "lima", "mike", "november", "oscar", "peter", "quebec", "romeo", "sierra", "tango",
         "日本語", "😀😁", "naïve", "Ωmega", "𝔘nicode", "x\u2028y", "z,", "(paren)", "newline\n", "tab\t"]


@st.composite
def cut_answers(draw: st.DrawFn) -> tuple[str, int]:
    """An answer of distinct words (so nothing repeats at a seam: no "papa" either), and a cut point in it."""
    words = draw(st.permutations(WORDS))[: draw(st.integers(2, len(WORDS)))]
    gaps = draw(st.lists(st.sampled_from([" ", " ", "  ", "\n\n", ", "]), min_size=len(words), max_size=len(words)))
    answer = "".join(w + g for w, g in zip(words, gaps)).rstrip() + "."
    return answer, draw(st.integers(1, len(answer) - 1))


@settings(max_examples=400, deadline=None)
@given(cut_answers())
def test_an_exact_continuation_of_the_prefill_rebuilds_the_answer(case: tuple[str, int]) -> None:
    answer, cut = case
    sent = answer[:cut]
    seam = splice(sent, answer[len(prefill(sent)):])
    if seam.restarted:
        assert len(sent) >= RESTART_PROBE and answer[len(prefill(sent)):].startswith(sent[:RESTART_PROBE])
        return
    assert sent + seam.emit == answer


@settings(max_examples=400, deadline=None)
@given(cut_answers(), st.integers(1, 96))
def test_an_echo_of_the_last_characters_is_dropped(case: tuple[str, int], size: int) -> None:
    answer, cut = case
    sent = answer[:cut]
    echo = min(size, len(prefill(sent)))
    start = len(prefill(sent)) - echo
    starts_word = start == 0 or (sent[start - 1].isspace() and not sent[start].isspace())
    if echo < MIN_ECHO and not starts_word or len(sent) - start > MAX_ECHO:
        return  # not an echo the rules promise to find (test_limit_a_short_echo_from_mid_word_is_kept)
    continuation = answer[start:]
    seam = splice(sent, continuation)
    if seam.restarted:
        return  # an echo of the whole answer so far is a restart when it is long enough
    assert sent + seam.emit == answer


@settings(max_examples=200, deadline=None)
@given(cut_answers())
def test_a_restart_is_detected_once_enough_was_sent(case: tuple[str, int]) -> None:
    answer, cut = case
    seam = splice(answer[:cut], answer)
    assert seam.restarted == (cut >= RESTART_PROBE)
    if not seam.restarted:
        assert answer[:cut] + seam.emit == answer  # short: the restart is all echo


@settings(max_examples=200, deadline=None)
@given(cut_answers())
def test_whitespace_left_out_differs_by_whitespace_only(case: tuple[str, int]) -> None:
    answer, cut = case
    sent = answer[:cut]
    continuation = answer[len(prefill(sent)):].lstrip()
    seam = splice(sent, continuation)
    if not seam.restarted:
        assert "".join((sent + seam.emit).split()) == "".join(answer.split())
