"""The seam of a continued answer (issue 12): what of a continuation to relay after the text already sent.

Pure and deterministic. The continuation was asked for with the prefill `sent.rstrip()` (Anthropic
refuses trailing whitespace, so every target gets the same prefill), and models at a seam do three
things: continue exactly (re-emitting the stripped whitespace), repeat the last words of the prefill
(an echo), or start the answer over. The rules, in order:

1. restart: `sent` has at least RESTART_PROBE characters and the continuation begins with them;
2. echo: the longest k <= MAX_ECHO such that `sent` ends with `continuation[:k]` is dropped, when
   k >= MIN_ECHO, or when the echo begins a word of `sent`; an echo of whitespace only is left to rule 3;
3. whitespace: up to len(trailing whitespace of `sent`) leading whitespace characters are dropped,
   since the client already shows them.

Known limits (each pinned by a named test): a genuine repetition at the seam ("very very") that
looks like an echo is dropped; a short echo that starts mid-word is kept; a model that leaves out
the whitespace the prefill lost, where the answer does have it, differs from it by that whitespace.
"""

from __future__ import annotations

from dataclasses import dataclass

RESTART_PROBE = 32  # characters: a continuation that begins with this much of the answer started over
MAX_ECHO = 96  # the longest echo looked for; also what the relay buffers before it splices
MIN_ECHO = 8  # an echo this long is dropped wherever it starts


@dataclass(frozen=True, slots=True)
class Seam:
    """What to relay of a continuation, how many characters were dropped, and whether it started over."""

    emit: str
    dropped: int = 0
    restarted: bool = False


def prefill(sent: str) -> str:
    """The assistant text a continuation is asked for: what was sent, without trailing whitespace."""
    return sent.rstrip()


def splice(sent: str, continuation: str) -> Seam:
    """The part of `continuation` that follows `sent` (see the module's rules)."""
    if len(sent) >= RESTART_PROBE and continuation.startswith(sent[:RESTART_PROBE]):
        return Seam("", restarted=True)
    echo = _echo(sent, continuation)
    if echo:
        return Seam(continuation[echo:], echo)
    spaces = _leading_space(continuation, len(sent) - len(sent.rstrip()))
    return Seam(continuation[spaces:], spaces)


def _echo(sent: str, continuation: str) -> int:
    for k in range(min(MAX_ECHO, len(sent), len(continuation)), 0, -1):
        head = continuation[:k]
        if head.isspace() or not sent.endswith(head):
            continue
        if k >= MIN_ECHO or _starts_word(sent, len(sent) - k):
            return k
    return 0


def _starts_word(text: str, at: int) -> bool:
    return not text[at].isspace() and (at == 0 or text[at - 1].isspace())


def _leading_space(text: str, limit: int) -> int:
    count = 0
    while count < limit and count < len(text) and text[count].isspace():
        count += 1
    return count
