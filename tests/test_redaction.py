"""Redaction of upstream secrets from error messages, as tables (adapters/redaction.py)."""

from __future__ import annotations

import base64

import pytest

from llm_sse_proxy.adapters.redaction import MAX_MESSAGE, RUN, Redactor

GROQ = "gsk_Q3ZxW7vLk2PjN8sRt5YbHc1MdF6gTa9KeU4oIw0Xy"  # not a real key
AZURE = "0123456789abcdef0123456789abcdef"
SHORT = "k9-short"  # 8 characters: redacted only whole
REDACTOR = Redactor([GROQ, AZURE, SHORT, "2024-10-21"[:7]])  # "2024-10": under 8 characters, not a secret


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"Invalid API Key: {GROQ}", GROQ),
        (f"Incorrect API key provided: {GROQ[:-4]}****.", GROQ[:-4]),  # cut short, or masked at the end
        (f"key {GROQ[:RUN]}", GROQ[:RUN]),  # the shortest run that is redacted
        (f"key ...{GROQ[10:30]}...", GROQ[10:30]),  # a run from the middle
        (f"Authorization: Basic {b64('user:' + GROQ)}", b64("user:" + GROQ)[12:-8]),
        (f"Authorization: Basic {b64(':' + GROQ)}", b64(":" + GROQ)[8:-8]),
        (f"Authorization: Basic {b64(GROQ)}", b64(GROQ)[:-8]),
        (f"urlsafe {base64.urlsafe_b64encode(('u:' + GROQ).encode()).decode()}", b64("u:" + GROQ)[8:-8]),
        (f"api-key {AZURE} was refused", AZURE),
        (f"short {SHORT} secret", SHORT),
        ("sk-proj-abc***************************wxyz is wrong", "sk-proj-abc"),  # a key shape, not configured
        ("gsk_unknown0123456789 is wrong", "gsk_unknown0123456789"),
    ],
)
def test_secrets_and_their_runs_and_encodings_are_redacted(text: str, gone: str) -> None:
    redacted = REDACTOR(text)
    assert gone not in redacted and "[redacted]" in redacted
    assert not any(GROQ[i : i + RUN] in redacted for i in range(len(GROQ) - RUN + 1))


@pytest.mark.parametrize(
    "text",
    [
        "The server had an error while processing your request.",
        "api-version 2024-10 is not supported",
        f"{GROQ[5:5 + RUN - 1]} is too short a run to matter",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert REDACTOR(text) == text


def test_a_run_is_redacted_as_one_marker_and_the_text_around_it_kept() -> None:
    assert REDACTOR(f"before {GROQ} after {GROQ[5:25]}!") == "before [redacted] after [redacted]!"


def test_long_messages_are_cut_before_they_are_passed_on() -> None:
    redacted = REDACTOR("x" * (MAX_MESSAGE * 3) + GROQ)
    assert len(redacted) <= MAX_MESSAGE + 3 and GROQ[:RUN] not in redacted
