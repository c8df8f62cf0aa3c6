"""Take docs/demo.png: the demo page mid-stream, in Debian's Chromium.

    .venv/bin/python -m tests.browser.screenshot
"""

from __future__ import annotations

from pathlib import Path

import anyio

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.config import load_config
from tests.browser.support import chromium
from tests.conftest import serve

ROOT = Path(__file__).parents[2]
OUT = ROOT / "docs" / "demo.png"


async def main() -> None:
    async with serve(create_app(load_config(ROOT / "config.yaml"))) as base, chromium() as browser:
        page = await browser.new_page(viewport={"width": 860, "height": 600}, device_scale_factor=1)
        await page.goto(f"{base}/")
        await page.wait_for_function("document.querySelector('#model').options.length > 0")
        await page.fill("#prompt", "Tell me about Server-Sent Events.")
        await page.check("input[name=transport][value=fetch]")
        await page.click("#send")
        await page.wait_for_function("document.querySelector('#reply').textContent.length >= 150")
        OUT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(OUT), animations="disabled")  # the cursor shown, not mid-blink
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    anyio.run(main)
