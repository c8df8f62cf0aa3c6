"""Issue 11's proof on the demo page: a model of each dialect streams thinking, a tool call and the answer,
in Debian's Chromium, through the proxy under uvicorn, against the real mock upstream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Page

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from llm_sse_proxy.mock_upstream.dialect import REASONING, TOOL_ARGUMENTS
from llm_sse_proxy.mock_upstream.openai_rich import THOUGHT
from tests.browser.support import needs_chromium, running
from tests.browser.test_demo_page import open_demo, settled_state
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, needs_chromium]

# Thinking on in each model's config. The mock's OpenAI dialect has no request switch for reasoning (a
# real OpenAI-compatible model decides by itself), so its model name asks for 4 reasoning deltas of 5
# characters and one tool call; the native dialects think and call the first tool as the request asks.
MODELS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "openai": ("gpt+reasoning=4+tool_calls=1", {}, THOUGHT[:20], {"city": "Paris", "unit": "celsius"}),
    "anthropic": ("claude-mock", {"thinking_budget": 1024}, REASONING, TOOL_ARGUMENTS),
    "gemini": ("gemini-mock", {"include_thoughts": True}, REASONING, TOOL_ARGUMENTS),
    "ollama": ("qwen-mock", {"think": True}, REASONING, TOOL_ARGUMENTS),
}


async def ask_with_the_demo_tool(page: Page, prompt: str, model: str) -> None:
    await page.fill("#prompt", prompt)
    await page.select_option("#model", model)
    await page.check("input[name=transport][value=fetch]")  # GET /stream cannot send tools
    await page.check("#offer-tool")
    await page.click("#send")


@pytest.mark.parametrize("dialect", list(MODELS))
async def test_a_model_of_each_dialect_streams_thinking_a_tool_call_and_the_answer(page: Page, dialect: str) -> None:
    upstream_model, options, thought, arguments = MODELS[dialect]
    async with mock_upstream() as up:
        config = upstream_config([up.model(dialect, upstream_model, dialect, **options)])
        async with running(config) as (base, _app, _counter):
            await open_demo(page, base)
            await ask_with_the_demo_tool(page, "Weather in Paris?", dialect)
            state = await settled_state(page)
            reply = await page.text_content("#reply")
            thinking = await page.text_content("#reasoning")
            thinking_shown = await page.is_visible("#thinking summary")
            captions = await page.locator(".tool-call figcaption").all_text_contents()
            shown_arguments = await page.locator(".tool-call pre").all_text_contents()
            notice = await page.text_content("#notice")
    sent_tools = [json.dumps(attempt.body.get("tools")) for attempt in up.recorder.attempts]
    assert (state, notice) == ("done", "The model asked to call the tools above; this demo does not run them.")
    assert reply == DEFAULT_REPLY
    assert thinking == thought and thinking_shown
    assert captions == ["Tool call: get_weather"]
    assert shown_arguments == [json.dumps(arguments, indent=2)]
    assert len(sent_tools) == 1 and "get_weather" in sent_tools[0]  # the page's tool reached the upstream


async def test_the_page_sends_no_tools_unless_asked(page: Page) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("claude", "claude-mock", "anthropic", thinking_budget=1024)])
        async with running(config) as (base, _app, _counter):
            await open_demo(page, base)
            await page.fill("#prompt", "Weather in Paris?")
            await page.check("input[name=transport][value=fetch]")
            await page.click("#send")
            state = await settled_state(page)
            calls = await page.locator(".tool-call").count()
            reply = await page.text_content("#reply")
    assert (state, calls, reply) == ("done", 0, DEFAULT_REPLY)
    assert [attempt.body.get("tools") for attempt in up.recorder.attempts] == [None]
