"""The demo page's rough edges (issue 14, "What a new user hit"), each in Chromium against the real proxy:
full stops, client keys, no empty card, the hints, a long model name, contrast, and the stats' one unit."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from llm_sse_proxy.adapters.mock import DEFAULT_REPLY
from llm_sse_proxy.proxy.config import load_config
from tests.browser.support import WAIT_MS, needs_chromium, running
from tests.browser.test_demo_page import TRANSPORTS, ask, open_demo, settled_state
from tests.conftest import make_config
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, needs_chromium]

ROOT = Path(__file__).parents[2]
KEY = "demo-page-client-key-0123456789"
KEYED = {"keys": [f"sha256:{hashlib.sha256(KEY.encode()).hexdigest()}"]}
LONG_NAME = "a-very-long-model-name-for-a-fine-tuned-llama-3.1-70b-instruct-q4"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_upstream_error_that_ends_in_a_full_stop_gets_no_second_one(page: Page, transport: str) -> None:
    async with mock_upstream() as up:
        down = up.model("down", "gpt+fail=99:503")
        async with running(upstream_config([down], retry={"attempts": 1})) as (base, _app, _counter):
            await open_demo(page, base)
            await ask(page, "hi", model="down", transport=transport)
            assert await settled_state(page) == "error"
            notice = await page.text_content("#notice") or ""
    assert notice.startswith("The model is unavailable right now."), notice
    assert ".." not in notice and notice.endswith("."), notice


async def page_with_keys(page: Page, base: str) -> None:
    await open_demo(page, base)
    await page.wait_for_selector("#key-row", state="visible")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_with_client_keys_on_the_page_asks_for_a_key_and_streams_with_it(page: Page, transport: str) -> None:
    async with running(make_config(auth=KEYED)) as (base, _app, counter):
        await page_with_keys(page, base)
        await ask(page, "hi", model="mock", transport=transport)  # no key yet: refused by the page itself
        no_key = await settled_state(page), await page.text_content("#notice") or ""
        asked_without_a_key = [seen[1] for seen in counter.seen if seen[1] in ("/chat", "/stream", "/token")]
        await page.fill("#key", "not-the-key-0123456789abcdef")
        await page.click("#send")
        wrong_key = await settled_state(page), await page.text_content("#notice") or ""
        await page.fill("#key", KEY)
        await page.click("#send")
        right_key = await settled_state(page), await page.text_content("#reply")
        stored = await page.evaluate("sessionStorage.getItem('llm-sse-proxy.key')")
        urls = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert no_key[0] == "error" and "client key" in no_key[1] and "auth.keys" in no_key[1], no_key
    assert asked_without_a_key == []
    assert wrong_key[0] == "error" and "client key" in wrong_key[1] and "(HTTP 401)" not in wrong_key[1], wrong_key
    assert "'Authorization: Bearer <key>'" in wrong_key[1] and ".." not in wrong_key[1], wrong_key
    assert right_key == ("done", DEFAULT_REPLY)
    assert stored == KEY
    assert urls and not [url for url in urls if KEY in url]  # the key travels in a header, never in a URL


async def test_a_key_typed_once_is_kept_for_the_tab_only(browser: Browser) -> None:
    context = await browser.new_context()
    try:
        async with running(make_config(auth=KEYED)) as (base, _app, _counter):
            first = await context.new_page()
            await page_with_keys(first, base)
            await first.fill("#key", KEY)
            await first.reload()
            await page_with_keys(first, base)
            kept = await first.input_value("#key")
            other = await context.new_page()  # a new tab: its own sessionStorage
            await page_with_keys(other, base)
            fresh = await other.input_value("#key")
            local = await first.evaluate("localStorage.length")
    finally:
        await context.close()
    assert (kept, fresh, local) == (KEY, "", 0)


async def test_without_client_keys_there_is_no_key_field(page: Page) -> None:
    async with running(load_config(ROOT / "config.yaml")) as (base, _app, _counter):
        await open_demo(page, base)
        hidden = await page.is_hidden("#key-row")
    assert hidden


async def test_no_empty_card_before_the_first_send(page: Page) -> None:
    async with running(load_config(ROOT / "config.yaml")) as (base, _app, _counter):
        await open_demo(page, base)
        before = await page.is_visible("#answer")
        await ask(page, "hi", model="mock", transport="fetch")
        await settled_state(page)
        after = await page.is_visible("#answer")
    assert (before, after) == (False, True)


@pytest.mark.parametrize(("config", "named", "unnamed"), [
    (lambda: load_config(ROOT / "config.yaml"), ["mock-error", "mock-reasoning", "mock-tools"], []),
    (lambda: make_config([{"name": "mock", "adapter": "mock"}, {"name": "mock-tools", "adapter": "mock"}]),
     ["mock-tools"], ["mock-error", "mock-reasoning"]),
    (lambda: make_config(), [], ["mock-error", "mock-reasoning", "mock-tools"]),
])
async def test_the_hint_names_only_the_rehearsal_models_the_proxy_has(
    page: Page, config: Any, named: list[str], unnamed: list[str]
) -> None:
    async with running(config()) as (base, _app, _counter):
        await open_demo(page, base)
        hint = await page.text_content(".hint") or ""
    assert all(name in hint for name in named), hint
    assert not any(name in hint for name in unnamed), hint


@pytest.mark.parametrize(("touch", "shown"), [(False, True), (True, False)])
async def test_ctrl_enter_is_not_offered_on_touch_screens(browser: Browser, touch: bool, shown: bool) -> None:
    viewport = {"width": 360, "height": 740} if touch else {"width": 1000, "height": 800}
    context = await browser.new_context(viewport=viewport, is_mobile=touch, has_touch=touch)
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        async with running(load_config(ROOT / "config.yaml")) as (base, _app, _counter):
            await open_demo(page, base)
            visible = await page.is_visible(".keys-hint")
    finally:
        await context.close()
    assert visible == shown


BOX = "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return [r.top, r.bottom, r.right]; }"


async def test_a_short_model_name_keeps_the_transport_beside_it(page: Page) -> None:
    # A long name is shown in full now (issue 26; tests/browser/test_demo_budgets.py), so it may take the row.
    async with running(make_config([{"name": "mock", "adapter": "mock"}])) as (base, _app, _counter):
        await open_demo(page, base)
        picker = await page.evaluate(BOX, "#model")
        transport = await page.evaluate(BOX, ".segmented")
    assert transport[0] < picker[1] and picker[0] < transport[1], (picker, transport)  # one row: they overlap in height


async def test_a_long_model_name_fits_a_phone(browser: Browser) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        config = make_config([{"name": LONG_NAME, "adapter": "mock"}])
        async with running(config) as (base, _app, _counter):
            await open_demo(page, base)
            picker = await page.evaluate(BOX, "#model")
            form = await page.evaluate(BOX, "#chat")
            widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    finally:
        await context.close()
    assert picker[2] <= form[2] and widths == [360, 360], (picker, form, widths)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_stats_count_tokens_only_and_as_the_upstream_reported_them(page: Page, transport: str) -> None:
    async with running(load_config(ROOT / "config.yaml")) as (base, _app, _counter):
        await open_demo(page, base)
        await page.evaluate("""() => {
            window.statsSeen = [];
            new MutationObserver(() => statsSeen.push(document.querySelector('#stats').textContent))
              .observe(document.querySelector('#stats'), {childList: true, characterData: true, subtree: true});
        }""")
        await ask(page, "hi", model="mock", transport=transport)
        assert await settled_state(page) == "done"
        seen: list[str] = await page.evaluate("statsSeen")
    units = {unit for text in seen for unit in re.findall(r"\d+ ([a-z]+)(?:/s)?\b", text)} - {"ms"}
    assert seen and units in ({"tokens"}, {"token"}, {"token", "tokens"}), seen
    assert re.search(r"· \d+ tokens · [\d.]+ tokens/s · answered by mock$", seen[-1]), seen[-1]


def luminance(rgb: tuple[float, float, float]) -> float:
    """Relative luminance of an sRGB colour, channels 0-255 (WCAG 2.2, "relative luminance")."""
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(ink: tuple[float, float, float], paper: tuple[float, float, float]) -> float:
    lighter, darker = sorted((luminance(ink), luminance(paper)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize(("ink", "paper", "ratio"), [
    ((0, 0, 0), (255, 255, 255), 21.0),
    ((255, 255, 255), (255, 255, 255), 1.0),
    ((119, 119, 119), (255, 255, 255), 4.48),  # #777 on white: the classic near miss of AA
    ((255, 255, 255), (0x6B, 0x9C, 0xFF), 2.69),  # the white on #6b9cff
])
def test_contrast_ratio(ink: tuple[int, int, int], paper: tuple[int, int, int], ratio: float) -> None:
    assert contrast_ratio(ink, paper) == pytest.approx(ratio, abs=0.01)
    assert contrast_ratio(paper, ink) == pytest.approx(ratio, abs=0.01)


# Every element that shows text of its own, with its colour and the first opaque background behind it.
TEXT_COLOURS = """() => {
  const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
  const opaque = (css) => { const c = rgb(css); return c.length === 3 || c[3] === 1; };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const ownText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!ownText || !el.checkVisibility({opacityProperty: true}) || el.closest(':disabled')) continue;
    let back = el;
    while (back && !opaque(getComputedStyle(back).backgroundColor)) back = back.parentElement;
    const paper = back ? getComputedStyle(back).backgroundColor : 'rgb(255, 255, 255)';
    out.push([el.tagName + (el.id ? '#' + el.id : ''), rgb(getComputedStyle(el).color), rgb(paper),
              getComputedStyle(el).opacity]);
  }
  return out;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_text_meets_wcag_aa_contrast(page: Page, scheme: str) -> None:
    await page.emulate_media(color_scheme=scheme)
    async with running(load_config(ROOT / "config.yaml")) as (base, _app, _counter):
        await open_demo(page, base)
        await ask(page, "hi", model="mock-error", transport="fetch")  # the reply, an error notice and the stats
        assert await settled_state(page) == "error"
        await page.check("input[name=transport][value=eventsource]")  # the checked label: text on the accent
        await page.fill("#prompt", "")  # the Send button enabled, the Stop button disabled (exempt, WCAG 1.4.3)
        shown = await page.evaluate(TEXT_COLOURS)
    low = [(name, ink, paper, round(contrast_ratio(ink[:3], paper[:3]), 2)) for name, ink, paper, opacity in shown
           if opacity != "1" or contrast_ratio(ink[:3], paper[:3]) < 4.5]
    names = {name for name, *_ in shown}
    assert {"BUTTON#send", "LABEL", "P#notice", "P#stats", "DIV#reply", "CODE"} <= names, names
    assert low == [], low
