"""Browser tests' support: Debian's Chromium driven by Playwright, and the proxy with a request counter.

No browser is ever downloaded (`playwright install` is not used). Locally the browser tests skip when
/usr/bin/chromium is missing; in CI (CI=true) they fail instead, because .ci/run installs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright
from starlette.types import Receive, Scope, Send

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.relay.relay import Upstream
from tests.conftest import serve

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts that this machine cannot reach.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


WAIT_MS = 15_000


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can (or must: in CI)."""
    if CHROMIUM.exists() or os.environ.get("CI") == "true":
        return None
    return f"no Chromium at {CHROMIUM}: apt-get install chromium (in CI this fails instead of skipping)"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), f"no Chromium at {CHROMIUM}; .ci/run installs it with apt-get install chromium"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


needs_chromium = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


class CountRequests:
    """Pure ASGI: records (method, path, origin) of every HTTP request that reaches the proxy."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = dict(scope["headers"]).get(b"origin")
            self.seen.append((scope["method"], scope["path"], origin.decode() if origin else None))
        await self.app(scope, receive, send)


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[tuple[str, Any, CountRequests]]:
    """The proxy on a free port: (base URL, the app, its request counter)."""
    app = create_app(config)
    counter = CountRequests(app)
    async with serve(counter) as base:
        yield base, app, counter


def upstream(app: Any, name: str) -> Upstream:
    return app.state.runtime.upstreams[name]
