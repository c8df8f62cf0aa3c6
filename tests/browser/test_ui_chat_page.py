"""A `useChat` page (tests/ui_chat/page.jsx, `@ai-sdk/react`) that talks to the proxy directly, bundled with
esbuild from tests/ui_chat's lockfile (no network here) and served by the test from another origin, in
Chromium: it shows a streamed answer, resumes it after a reload mid-answer, and its stop button stops the model."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from llm_sse_proxy.proxy.app import create_app
from tests.browser.support import needs_chromium
from tests.conftest import serve
from tests.ui_chat_npm import UI_CHAT_DIR, ui_chat_node  # noqa: F401 (a fixture)
from tests.upstream_fixtures import Upstream, mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, needs_chromium]

HTML = '<!doctype html><meta charset="utf-8"><title>useChat</title><div id="root"></div><script src="/page.js"></script>'


@pytest.fixture(scope="module")
def bundle(ui_chat_node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:  # noqa: F811
    out = tmp_path_factory.mktemp("ui_chat") / "page.js"
    done = subprocess.run([str(UI_CHAT_DIR / "node_modules" / ".bin" / "esbuild"), "page.jsx", "--bundle",
                           "--jsx=automatic", "--format=iife", "--define:process.env.NODE_ENV=\"production\"",
                           f"--outfile={out}", "--log-level=warning"],
                          cwd=UI_CHAT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    yield Path(out).read_bytes()


@asynccontextmanager
async def page_server(script: bytes) -> AsyncIterator[str]:
    """The page on an origin of its own: the proxy is reached cross-site, as a deployed app would."""
    async def index(request: object) -> Response:
        return HTMLResponse(HTML)

    async def code(request: object) -> Response:
        return Response(script, media_type="text/javascript")

    async with serve(Starlette(routes=[Route("/", index), Route("/page.js", code)])) as url:
        yield url


@asynccontextmanager
async def chat_page(page: Page, bundle: bytes, up: Upstream, chat: str) -> AsyncIterator[str]:
    slow = up.model("slow", "gpt+delay_ms=80+chunk_chars=3")
    async with serve(create_app(upstream_config([slow], resume={"grace": 60}))) as proxy, page_server(bundle) as site:
        url = f"{site}/?{urlencode({'api': proxy + '/api/chat', 'chat': chat, 'model': 'slow'})}"
        await page.goto(url)
        await page.wait_for_selector("#status")
        yield url


async def send(page: Page, prompt: str) -> None:
    await page.fill("#prompt", prompt)
    await page.click("#send")


async def finished(page: Page) -> tuple[str, str]:
    await page.wait_for_function("document.querySelector('#status').textContent === 'ready'"
                                 " && document.querySelector('#answer').textContent.length > 0")
    return await page.text_content("#answer") or "", await page.text_content("#error") or ""


async def test_the_page_shows_the_streamed_answer(page: Page, bundle: bytes) -> None:
    async with mock_upstream() as up, chat_page(page, bundle, up, "chat-streamed"):
        await send(page, "hi")
        await page.wait_for_function("document.querySelector('#status').textContent === 'streaming'")
        assert await finished(page) == (DEFAULT_REPLY, "")
    assert up.recorder.count() == 1 and up.recorder.attempts[0].finished


async def test_a_reload_mid_answer_shows_the_same_answer_resumed(page: Page, bundle: bytes) -> None:
    async with mock_upstream() as up, chat_page(page, bundle, up, "chat-reloaded"):
        await send(page, "hi")
        await page.wait_for_function("document.querySelector('#answer').textContent.length >= 9")
        await page.reload()
        assert await finished(page) == (DEFAULT_REPLY, "")
    assert up.recorder.count() == 1  # one generation: the page resumed it, nothing was asked twice


async def test_the_stop_button_stops_the_model(page: Page, bundle: bytes) -> None:
    async with mock_upstream() as up, chat_page(page, bundle, up, "chat-stopped"):
        await send(page, "hi")
        await page.wait_for_function("document.querySelector('#answer').textContent.length >= 6")
        await page.click("#stop")
        await page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        await up.recorder.wait_closed(0, timeout=5)  # long before resume.grace (60 s)
        shown = await page.text_content("#answer") or ""
    assert not up.recorder.attempts[0].finished
    assert 0 < len(shown) < len(DEFAULT_REPLY) and DEFAULT_REPLY.startswith(shown)
