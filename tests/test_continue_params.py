"""How the OpenAI-compatible adapter spells "continue this assistant message" (issue 12). A table."""

from __future__ import annotations

import pytest

from llm_sse_proxy.adapters.openai_params import chat_params
from llm_sse_proxy.proxy.deltas import ChatRequest, Message

ASKED = (Message("user", "Tell me a story."), Message("assistant", "Once upon a"))


@pytest.mark.parametrize(("spelling", "last", "extra"), [
    (None, {"role": "assistant", "content": "Once upon a"}, {}),
    ("trailing_assistant", {"role": "assistant", "content": "Once upon a"}, {}),
    ("prefix_flag", {"role": "assistant", "content": "Once upon a", "prefix": True}, {}),
    ("continue_final_message", {"role": "assistant", "content": "Once upon a"},
     {"continue_final_message": True, "add_generation_prompt": False}),
])
def test_each_spelling_of_a_continuation(spelling: str | None, last: dict, extra: dict) -> None:
    params = chat_params("m", ChatRequest(ASKED, continue_with=spelling))  # type: ignore[arg-type]
    assert params["messages"] == [{"role": "user", "content": "Tell me a story."}, last]
    assert {k: params[k] for k in ("continue_final_message", "add_generation_prompt") if k in params} == extra
