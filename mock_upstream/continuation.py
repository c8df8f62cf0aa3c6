"""How the mock upstream continues an answer (issue 12): its reply to a request that ends with assistant text.

A request whose last message is an assistant message (OpenAI, Anthropic and Ollama shapes) or a `model`
turn (Gemini) asks for a continuation. Like the servers it stands for, the mock continues only when
the request spells it the way the model understands (``continue_with``, as in the proxy's config):
``trailing_assistant`` (the message alone, as llama.cpp's server and Ollama), ``prefix_flag``
(``"prefix": true`` on it, as DeepSeek and Mistral) or ``continue_final_message`` (the body's
``continue_final_message: true`` and ``add_generation_prompt: false``, as vLLM and SGLang). Asked
any other way, it starts a new answer: the canonical answer from its start.

Options (headers ``x-mock-<name>`` or the model-name suffix, as for every mock option):
- ``continue_with=S``: the spelling this model understands (default ``trailing_assistant``);
- ``echo_chars=M``: the continuation repeats the last M characters of the prefill first (an overlap);
- ``start_over=1``: the model ignores the prefill and answers from the start;
- ``prefill=reject``: a trailing assistant message gets a 400 with Anthropic's text (Claude 4.6+);
- ``fault_attempts=N``: the ``*_after`` fault fires on the first N attempts that were not ``fail``ed
  (by ``key``), so a recovery attempt can succeed;
- ``malformed_times=N``: ``malformed_after`` sends N malformed chunks in a row (default 1).
"""

from __future__ import annotations


CONTINUATION_OPTIONS = ("continue_with", "echo_chars", "start_over", "prefill", "fault_attempts", "malformed_times")
SPELLINGS = ("trailing_assistant", "prefix_flag", "continue_final_message")
PREFILL_REJECTED = ("This model does not support assistant message prefill. "
                    "The conversation must end with a user message.")


class PrefillRejected(ValueError):
    """The model refuses any assistant prefill: a 400 with PREFILL_REJECTED."""


def reply(body: dict, canonical: str, opts: dict[str, str]) -> str:
    """The text this request gets: `canonical`, or what follows the prefill in it."""
    found = _trailing_assistant(body)
    if found is None:
        return canonical
    prefill, last = found
    if opts.get("prefill") == "reject":
        raise PrefillRejected(PREFILL_REJECTED)
    spelling = opts.get("continue_with", "trailing_assistant")
    if spelling not in SPELLINGS:
        raise ValueError(f"continue_with must be one of {', '.join(SPELLINGS)}")
    if opts.get("start_over") == "1" or not _spelled(body, last, spelling) or not canonical.startswith(prefill):
        return canonical
    return canonical[max(0, len(prefill) - int(opts.get("echo_chars", 0))):]


def _trailing_assistant(body: dict) -> tuple[str, dict] | None:
    turns = body.get("messages") or body.get("contents")
    last = turns[-1] if isinstance(turns, list) and turns else None
    if not isinstance(last, dict) or last.get("role") not in ("assistant", "model"):
        return None
    content = last.get("content", last.get("parts"))
    if isinstance(content, list):  # Anthropic's blocks, Gemini's parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return (content, last) if isinstance(content, str) else None


def _spelled(body: dict, last: dict, spelling: str) -> bool:
    if spelling == "prefix_flag":
        return last.get("prefix") is True
    if spelling == "continue_final_message":
        return body.get("continue_final_message") is True and body.get("add_generation_prompt") is False
    return True


def fault_fires(opts: dict[str, str], attempt: int, failed: int) -> bool:
    """Whether the `*_after` fault fires on this key's `attempt`-th request (`failed` of them got `fail`)."""
    limit = int(opts.get("fault_attempts", 0))
    return limit <= 0 or attempt - failed <= limit
