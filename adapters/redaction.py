"""Keep upstream secrets out of error messages: pure functions, tested with tables (tests/test_redaction.py).

An upstream can quote the key in an error message, and not always whole: OpenAI masks all but a
prefix and the last four characters; others cut it short, or echo the Authorization header as
HTTP Basic credentials. So any run of RUN or more characters of a secret is redacted, and so are its
base64 forms (at each of the three byte alignments, in both alphabets).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

MAX_MESSAGE = 2000  # an upstream's error message is cut to this many characters before it is passed on
RUN = 12  # shorter runs of a key's characters are not enough to matter, and would redact ordinary words
MIN_SECRET = 8  # shorter values (an api-version, a flag) are not secrets worth redacting
REDACTED = "[redacted]"
# Key shapes recognised without a configured key: OpenAI's sk-, Groq's gsk_, xAI's xai-.
_KEYLIKE = re.compile(r"\b(?:sk|gsk|xai)[-_][A-Za-z0-9_\-*.]{4,}")


class Redactor:
    """Built once per adapter from its secrets; calling it is pure."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets if len(secret) >= MIN_SECRET for form in _forms(secret)}
        self._exact = sorted((f for f in forms if len(f) < RUN), key=len, reverse=True)
        self._runs = frozenset(f[i : i + RUN] for f in forms if len(f) >= RUN for i in range(len(f) - RUN + 1))

    def __call__(self, text: str) -> str:
        """`text`, cut to MAX_MESSAGE characters, with every secret and key-like run replaced."""
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE] + "..."
        for secret in self._exact:
            text = text.replace(secret, REDACTED)
        if self._runs:
            runs = self._runs
            text = _cut(text, [i for i in range(len(text) - RUN + 1) if text[i : i + RUN] in runs])
        return _KEYLIKE.sub(REDACTED, text)


def _forms(secret: str) -> list[str]:
    """The secret, and the stable middle of its base64 encodings when it sits at any byte offset."""
    forms = [secret]
    raw = secret.encode()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # The first group mixes in the bytes before it, the last (and its padding) the bytes after.
        middle = encoded[4 if offset else 0 : len(encoded) - 4]
        if len(middle) >= RUN:
            forms += [middle, middle.replace("+", "-").replace("/", "_")]
    return forms


def _cut(text: str, starts: list[int]) -> str:
    """Replace each merged span [start, start + RUN) with one marker."""
    if not starts:
        return text
    pieces, kept, span_start, span_end = [], 0, starts[0], starts[0] + RUN
    for start in starts[1:]:
        if start > span_end:
            pieces += [text[kept:span_start], REDACTED]
            kept, span_start = span_end, start
        span_end = start + RUN
    pieces += [text[kept:span_start], REDACTED, text[span_end:]]
    return "".join(pieces)
