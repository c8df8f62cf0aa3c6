"""The demo page and the article's client in a real browser (Debian's Chromium via Playwright),
against the proxy under uvicorn on a free loopback port."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Browser, Page
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from llm_sse_proxy.adapters.mock import DEFAULT_REPLY, split_reply
from llm_sse_proxy.mock_upstream import DEFAULT_REPLY as DEFAULT_REPLY_UPSTREAM
from llm_sse_proxy.proxy.config import load_config
from tests.browser.support import WAIT_MS, needs_chromium, running, upstream
from tests.conftest import make_config, serve
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, needs_chromium]

ROOT = Path(__file__).parents[2]
ARTICLE_PAGE = Path(__file__).parent / "article_client.html"
ARTICLE_URL = "http://127.0.0.1:8080/stream"  # the article's proxy address, replaced by the test proxy's
TRANSPORTS = ["eventsource", "fetch"]


async def eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.02)


async def open_demo(page: Page, base: str) -> None:
    await page.goto(f"{base}/")
    await page.wait_for_function("document.querySelector('#model').options.length > 0")


async def ask(page: Page, prompt: str, *, model: str, transport: str) -> None:
    await page.fill("#prompt", prompt)
    await page.select_option("#model", model)
    await page.check(f"input[name=transport][value={transport}]")
    await page.click("#send")


async def settled_state(page: Page) -> str:
    """Wait for the stream to end; return the page's state: done, error or stopped."""
    await page.wait_for_function("document.querySelector('#answer').dataset.state !== 'streaming'")
    return await page.get_attribute("#answer", "data-state") or ""


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_demo_page_streams_the_mock_reply(page: Page, transport: str) -> None:
    async with running(load_config(ROOT / "config.yaml")) as (base, app, _):
        await open_demo(page, base)
        assert await page.input_value("#model") == "mock"  # the config's default_model is preselected
        await ask(page, "What are Server-Sent Events?", model="mock", transport=transport)
        assert await settled_state(page) == "done"
        reply = await page.text_content("#reply")
        stats = await page.text_content("#stats") or ""
        notice = await page.text_content("#notice")
        asked = upstream(app, "mock").adapter.requests  # type: ignore[attr-defined]
    assert reply == DEFAULT_REPLY
    assert notice == ""
    assert "first token" in stats and "tokens/s" in stats and "answered by mock" in stats, stats
    assert [r.messages[-1].content for r in asked] == ["What are Server-Sent Events?"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stop_aborts_the_stream_and_the_upstream_connection_closes(
    page: Page, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")

    def logged() -> list[dict]:  # the proxy's access-log lines for this stream
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]
        return [line for line in lines if line["model"] == "slow"]

    async with mock_upstream() as up:
        slow = up.model("slow", "gpt+delay_ms=150+chunk_chars=2")  # ~7 s of reply: time to press Stop
        async with running(upstream_config([slow])) as (base, _app, _):
            await open_demo(page, base)
            await ask(page, "hi", model="slow", transport=transport)
            await page.wait_for_function("document.querySelector('#reply').textContent.length >= 4")
            await page.click("#stop")
            await up.recorder.wait_closed(0, timeout=5)
            await eventually(lambda: logged() != [])
            state = await page.get_attribute("#answer", "data-state")
            reply = await page.text_content("#reply") or ""
            send_enabled = await page.is_enabled("#send")
    attempt = up.recorder.attempts[0]
    assert not attempt.finished and up.recorder.count() == 1
    assert len(logged()) == 1 and logged()[0]["reason"] == "cancelled", logged()
    assert state == "stopped" and send_enabled
    assert 4 <= len(reply) < len(DEFAULT_REPLY_UPSTREAM) and DEFAULT_REPLY_UPSTREAM.startswith(reply)


async def test_article_client_from_another_origin_reads_the_whole_reply_once(page: Page) -> None:
    html = ARTICLE_PAGE.read_text(encoding="utf-8")
    assert html.count(ARTICLE_URL) == 1
    reply = "CORS works: the whole reply, then one terminate."
    config = make_config([{"name": "mock", "adapter": "mock", "reply": reply, "chunk_chars": 5, "chunk_delay_ms": 5}])
    async with running(config) as (proxy_base, app, counter):
        page_html = html.replace(ARTICLE_URL, f"{proxy_base}/stream")  # the script is otherwise unchanged
        site = Starlette(routes=[Route("/", lambda request: HTMLResponse(page_html))])
        async with serve(site) as site_base:
            assert site_base != proxy_base
            await page.goto(f"{site_base}/")
            await page.wait_for_function("chatStream.readyState === EventSource.CLOSED")
            text = await page.text_content("#app")
            asked = len(upstream(app, "mock").adapter.requests)  # type: ignore[attr-defined]
    assert text == reply
    assert counter.seen == [("GET", "/stream", site_base)]
    assert asked == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_upstream_error_shows_in_the_page(page: Page, transport: str) -> None:
    async with running(load_config(ROOT / "config.yaml")) as (base, _, _counter):
        await open_demo(page, base)
        await ask(page, "hi", model="mock-error", transport=transport)
        state = await settled_state(page)
        reply = await page.text_content("#reply")
        notice = await page.text_content("#notice") or ""
    assert state == "error"
    assert reply == "".join(split_reply(DEFAULT_REPLY, 6)[:5])  # mock-error fails after 5 chunks
    assert "The text above is incomplete" in notice
    assert "the mock upstream failed, as scripted" in notice


AWKWARD_PROMPT = (
    'line one\n  indented "quotes" and \\ backslash\n\n'
    "<b>not bold</b> &amp; <script>alert(1)</script>\n"
    "unicode é ü ß 中文 العربية\n"
    "emoji 🎉👩‍👩‍👧 flags 🇫🇷\ttab\n"
)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_text_with_newlines_unicode_and_emoji_renders_exactly(page: Page, transport: str) -> None:
    async with running(load_config(ROOT / "config.yaml")) as (base, _, _counter):
        await open_demo(page, base)
        await ask(page, AWKWARD_PROMPT, model="mock-echo", transport=transport)
        assert await settled_state(page) == "done"
        text = await page.text_content("#reply")
        shown = await page.inner_text("#reply")
        elements = await page.eval_on_selector("#reply", "node => node.querySelectorAll('*').length")
    assert text == AWKWARD_PROMPT
    assert shown.rstrip("\n") == AWKWARD_PROMPT.rstrip("\n")  # what a person sees keeps the line breaks
    assert elements == 0  # streamed text is never parsed as HTML


async def test_demo_page_fits_a_phone(browser: Browser) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True)
    phone = await context.new_page()
    phone.set_default_timeout(WAIT_MS)
    try:
        async with running(load_config(ROOT / "config.yaml")) as (base, _, _counter):
            await open_demo(phone, base)
            await ask(phone, "a_long_unbroken_token" * 20, model="mock-echo", transport="fetch")
            assert await settled_state(phone) == "done"
            widths = await phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    finally:
        await context.close()
    assert widths == [360, 360], f"the page is wider than a phone (scrollWidth, innerWidth): {widths}"



@pytest.mark.parametrize("events", ["", "reasoning,tool_call,tool_call_delta,refusal"])
async def test_article_client_reads_only_the_answer_when_the_stream_carries_reasoning_and_tool_calls(
    page: Page, events: str
) -> None:
    # The article's script, unchanged; only its URL points at this proxy (asking, or not, for every named event).
    html = ARTICLE_PAGE.read_text(encoding="utf-8")
    reply = "Only this reaches the page."
    rich = {"name": "rich", "adapter": "mock", "reply": reply, "chunk_chars": 4, "chunk_delay_ms": 5,
            "thinking": "Private thoughts.", "tool_calls": [{"name": "get_weather", "arguments": '{"city":"Paris"}'}]}
    async with running(make_config([rich])) as (proxy_base, _app, _counter):
        url = f"{proxy_base}/stream" + (f"?events={events}" if events else "")
        site = Starlette(routes=[Route("/", lambda request: HTMLResponse(html.replace(ARTICLE_URL, url)))])
        async with serve(site) as site_base:
            await page.goto(f"{site_base}/")
            await page.wait_for_function("chatStream.readyState === EventSource.CLOSED")
            text = await page.text_content("#app")
    assert text == reply


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_demo_page_shows_thinking_and_tool_calls(page: Page, transport: str) -> None:
    config = load_config(ROOT / "config.yaml")
    mock_tools = config.model("mock-tools").options  # type: ignore[union-attr]
    async with running(config) as (base, _app, _counter):
        await open_demo(page, base)
        assert await page.is_hidden("#thinking")
        await ask(page, "Weather in Paris?", model="mock-tools", transport=transport)
        assert await settled_state(page) == "done"
        reply = await page.text_content("#reply")
        thinking = await page.text_content("#reasoning")
        thinking_shown = await page.is_visible("#thinking summary")
        captions = await page.locator(".tool-call figcaption").all_text_contents()
        arguments = await page.locator(".tool-call pre").all_text_contents()
        notice = await page.text_content("#notice")
    assert reply == mock_tools.reply
    assert thinking == mock_tools.thinking and thinking_shown
    assert captions == ["Tool call: get_weather"]
    assert arguments == [json.dumps(json.loads(mock_tools.tool_calls[0].arguments), indent=2)]
    assert notice == "The model asked to call the tools above; this demo does not run them."


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_demo_page_honours_a_reset_and_shows_the_answer_once(page: Page, transport: str) -> None:
    async with mock_upstream() as up:
        model = up.model("restarts", f"{transport}+drop_after=5+fault_attempts=1", recovery="restart")
        async with running(upstream_config([model])) as (base, _app, _counter):
            await open_demo(page, base)
            await ask(page, "hi", model="restarts", transport=transport)
            assert await settled_state(page) == "done"
            reply = await page.text_content("#reply")
    assert reply == DEFAULT_REPLY_UPSTREAM  # the first attempt's 5 chunks were discarded, not shown twice
    assert up.recorder.count() == 2
