"""The README's three client snippets, run exactly as written in Chromium, from another origin:
native EventSource, sse-client.js, and @microsoft/fetch-event-source (from tests/node's lockfile)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from llm_sse_proxy.adapters.mock import DEFAULT_REPLY, split_reply
from llm_sse_proxy.proxy.config import load_config
from tests.browser.support import needs_chromium, running, upstream
from tests.conftest import NODE_DIR, make_config, serve

pytestmark = [pytest.mark.anyio, needs_chromium]

ROOT = Path(__file__).parents[2]
SNIPPET = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\n```js\n(?P<code>.*?)```", re.DOTALL)
README_PROXY = "http://127.0.0.1:8080"
FETCH_EVENT_SOURCE = NODE_DIR / "node_modules" / "@microsoft" / "fetch-event-source" / "lib" / "esm"
HARNESS = """<!doctype html>
<meta charset="utf-8">
<script type="importmap">{"imports": {"@microsoft/fetch-event-source": "/fetch-event-source/index.js"}}</script>
<p id="reply"></p>
<p id="notice"></p>
<script type="module">
const reply = document.querySelector("#reply");
const notice = document.querySelector("#notice");
%s
window.snippetSource = typeof source === "undefined" ? null : source;
window.snippetDone = true;
</script>
"""


def readme_snippets() -> dict[str, str]:
    return {m["name"]: m["code"] for m in SNIPPET.finditer((ROOT / "README.md").read_text(encoding="utf-8"))}


def snippet_site(code: str) -> Starlette:
    """Serves the harness page, and the npm package's ES modules (their imports have no .js suffix)."""

    def module(request: Request) -> Response:
        name = request.path_params["name"]
        path = FETCH_EVENT_SOURCE / (name if name.endswith(".js") else f"{name}.js")
        return Response(path.read_bytes(), media_type="text/javascript")

    return Starlette(routes=[
        Route("/", lambda request: HTMLResponse(HARNESS % code)),
        Route("/fetch-event-source/{name:str}", module),
    ])


def test_readme_has_the_three_snippets() -> None:
    assert sorted(readme_snippets()) == ["eventsource", "fetch-event-source", "sse-client"]


STREAMS = {"eventsource": ("GET", "/stream"), "sse-client": ("POST", "/chat"), "fetch-event-source": ("POST", "/chat")}
FAILING = {"name": "mock", "adapter": "mock", "chunk_delay_ms": 5, "fail_after_chunks": 5, "fail_kind": "rejected"}
SCENARIOS = {
    # name: (config, the reply the page must show, what its notice must contain, upstream calls)
    "ok": (lambda: load_config(ROOT / "config.yaml"), DEFAULT_REPLY, "", 1),
    "error mid-stream": (lambda: make_config([FAILING]), "".join(split_reply(DEFAULT_REPLY, 6)[:5]),
                         "the mock upstream failed, as scripted", 1),
    "refused": (lambda: make_config(server={"max_body_bytes": 10}), "", "over the 10-byte limit", 0),
}
SNIPPET_CASES = [(snippet, scenario) for snippet in STREAMS for scenario in SCENARIOS
                 if not (snippet == "eventsource" and scenario == "refused")]  # a GET has no body to refuse


@pytest.mark.parametrize(("snippet", "scenario"), SNIPPET_CASES)
async def test_readme_snippet_reads_the_reply_and_asks_once(page: Page, npm_packages: str, snippet: str, scenario: str) -> None:
    code = readme_snippets()[snippet]
    assert README_PROXY in code
    config, want_reply, want_notice, want_calls = SCENARIOS[scenario]
    async with running(config()) as (proxy_base, app, counter):
        async with serve(snippet_site(code.replace(README_PROXY, proxy_base))) as site_base:
            await page.goto(f"{site_base}/")
            # Top-level await: `snippetDone` is set when a fetch snippet has finished; an EventSource is closed.
            await page.wait_for_function(
                "window.snippetDone && (!snippetSource || snippetSource.readyState === EventSource.CLOSED)"
            )
            reply = await page.text_content("#reply")
            notice = await page.text_content("#notice") or ""
            calls = len(upstream(app, "mock").adapter.requests)  # type: ignore[attr-defined]
    assert reply == want_reply
    assert want_notice in notice and (notice == "") == (want_notice == "")
    streams = [seen for seen in counter.seen if seen[1] in ("/stream", "/chat") and seen[0] != "OPTIONS"]
    assert streams == [(*STREAMS[snippet], site_base)]  # one request: no retry, no reconnect
    assert calls == want_calls
