"""The demo page resumes a cut stream on its own: Chromium reads the proxy through a TCP forwarder
that the test cuts mid-answer (every connection dropped, the port closed) and then restores."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from tests.browser.cutter import Cutter
from tests.browser.support import needs_chromium, running
from tests.browser.test_demo_page import ask, open_demo, settled_state
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, needs_chromium]


@pytest.mark.parametrize("transport", ["eventsource", "fetch"])
async def test_a_cut_mid_answer_resumes_and_the_page_shows_the_whole_answer_once(page: Page, transport: str) -> None:
    async with mock_upstream() as up:
        slow = up.model("slow", "gpt+delay_ms=60+chunk_chars=3")
        async with running(upstream_config([slow])) as (base, _app, counter):
            cutter = Cutter(int(base.rsplit(":", 1)[1]))
            await cutter.restore()
            try:
                await open_demo(page, cutter.url)
                await ask(page, "hi", model="slow", transport=transport)
                await page.wait_for_function("document.querySelector('#reply').textContent.length >= 12")
                await cutter.cut()
                await asyncio.sleep(0.3)  # the page sees the cut, and its first retry may fail too
                await cutter.restore()
                state = await settled_state(page)
                reply = await page.text_content("#reply")
            finally:
                await cutter.close()
    assert (state, reply) == ("done", DEFAULT_REPLY)
    assert up.recorder.count() == 1  # one generation: the reconnect resumed it, nothing was asked twice
    streams = [path for _method, path, _origin in counter.seen if path in ("/chat", "/stream") or "/streams/" in path]
    assert len(streams) >= 2, counter.seen  # the first request, then at least one reconnect
