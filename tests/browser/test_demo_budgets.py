"""The demo page with end users and budgets (issue 23), and in EventSource mode (issue 26, item 14): in
Chromium against the real proxy. What is left shows under the answer; a spent budget is a sentence a
person understands; a proxy that is down is said to be down at once; a prompt too long for a GET URL
goes by fetch; the tool box is off for EventSource; a recovered answer says so; thinking is open while
it streams; a long model name is shown in full."""

from __future__ import annotations

import time

import jwt
import pytest
from playwright.async_api import Page

from tests.browser.support import needs_chromium, running
from tests.browser.test_demo_page import TRANSPORTS, ask, open_demo, settled_state
from tests.conftest import make_config

pytestmark = [pytest.mark.anyio, needs_chromium]

SECRET = "a-shared-secret-of-32-characters-or-more"
MOCK = {"name": "mock", "adapter": "mock", "reply": "one two three four five six", "chunk_chars": 4,
        "chunk_delay_ms": 0}
LONG_NAME = "a-very-long-model-name-for-a-fine-tuned-llama-3.1-70b-instruct-q4"


def signed(sub: str = "alice") -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_page_shows_what_is_left_and_a_spent_budget_in_words(page: Page, transport: str) -> None:
    config = make_config([MOCK], auth={"jwt": {"secret": "${JWT_SECRET}"}}, environ={"JWT_SECRET": SECRET},
                         budgets={"users": {"requests_per_minute": 1, "tokens_per_day": 5000}})
    async with running(config) as (base, _app, _counter):
        await open_demo(page, base)
        await page.fill("#key", signed())
        await ask(page, "hi", model="mock", transport="fetch")
        assert await settled_state(page) == "done"
        await page.wait_for_function("document.querySelector('#usage').textContent.startsWith('Left: 0 of 1')")
        left = await page.text_content("#usage")
        await ask(page, "hi", model="mock", transport=transport)
        state = await settled_state(page)
        notice = await page.text_content("#notice") or ""
        if transport == "eventsource":  # it cannot read the 429: the page asks GET /usage, then says the same
            await page.wait_for_function("document.querySelector('#notice').textContent.startsWith('You have')")
            notice = await page.text_content("#notice") or ""
    assert "requests this minute" in (left or "") and "tokens today" in (left or "")
    assert state == "error"
    assert notice.startswith("You have used up your requests for this minute. You can send again in ")


async def test_eventsource_says_at_once_that_the_proxy_is_down(page: Page) -> None:
    async with running(make_config([MOCK])) as (base, _app, _counter):
        await open_demo(page, base)
    # The proxy is gone: EventSource alone would retry for half a minute; the page asks /healthz once.
    await ask(page, "hi", model="mock", transport="eventsource")
    assert await settled_state(page) == "error"
    assert await page.text_content("#notice") == "Could not reach the proxy. Is it running?"


async def test_a_prompt_too_long_for_a_get_url_goes_by_fetch(page: Page) -> None:
    async with running(make_config([MOCK])) as (base, _app, counter):
        await open_demo(page, base)
        await ask(page, "word " * 5000, model="mock", transport="eventsource")
        state = await settled_state(page)
        notice = await page.text_content("#notice") or ""
        reply = await page.text_content("#reply")
    assert state == "done" and reply == MOCK["reply"]
    assert notice.startswith("Sent with fetch: this prompt is too long")
    assert ("POST", "/chat", None) in [(m, p, None) for m, p, _ in counter.seen] and not any(
        p == "/stream" for _, p, _ in counter.seen)


async def test_the_tool_box_is_off_for_eventsource(page: Page) -> None:
    async with running(make_config([MOCK])) as (base, _app, _counter):
        await open_demo(page, base)
        await page.check("input[name=transport][value=eventsource]")
        off = await page.is_disabled("#offer-tool")
        await page.check("input[name=transport][value=fetch]")
        on = await page.is_enabled("#offer-tool")
    assert off and on


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_recovered_answer_says_it_was_recovered(page: Page, transport: str) -> None:
    recovering = {**MOCK, "fail_after_chunks": 2, "fail_continuations": False, "recovery": "continue",
                  "continue_with": "trailing_assistant"}
    async with running(make_config([recovering], retry={"backoff_initial": 0})) as (base, _app, _counter):
        await open_demo(page, base)
        await ask(page, "hi", model="mock", transport=transport)
        state = await settled_state(page)
        notice = await page.text_content("#notice") or ""
        reply = await page.text_content("#reply")
        recovered = await page.get_attribute("#answer", "data-recovered")
    assert state == "done" and reply == MOCK["reply"] and recovered == "continue"
    assert "the proxy recovered it" in notice


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_thinking_is_open_while_it_streams(page: Page, transport: str) -> None:
    thinker = {**MOCK, "thinking": "Let me think about this for a while.", "chunk_delay_ms": 150}
    async with running(make_config([thinker])) as (base, _app, _counter):
        await open_demo(page, base)
        await ask(page, "hi", model="mock", transport=transport)
        await page.wait_for_function("document.querySelector('#reasoning').textContent.length > 0")
        open_while_streaming = await page.evaluate("document.querySelector('#thinking').open")
        await settled_state(page)
    assert open_while_streaming is True


async def test_a_long_model_name_is_shown_in_full(page: Page) -> None:
    config = make_config([{"name": LONG_NAME, "adapter": "mock"}, {"name": "mock", "adapter": "mock"}])
    async with running(config) as (base, _app, _counter):
        await open_demo(page, base)
        fits = await page.evaluate("""() => {
            const select = document.querySelector('#model');
            const context = document.createElement('canvas').getContext('2d');
            context.font = getComputedStyle(select).font;
            return context.measureText(select.value).width <= select.clientWidth;
        }""")
    assert fits
