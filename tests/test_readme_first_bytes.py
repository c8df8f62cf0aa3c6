"""Issue 26, item 15: the README's first example is the bytes a default stream really starts with (stream
ids `<sid>:<n>`, and GET's opening `:0` / `retry:` event), not an idealised `id: 1`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import make_config, proxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

README = Path(__file__).parents[1] / "README.md"
FIRST_BYTES = re.compile(r"<!-- first-bytes -->\n```\n(?P<bytes>.*?)```", re.DOTALL)
MOCK = {"name": "mock", "adapter": "mock", "reply": "Server-Sent Events", "chunk_chars": 12, "chunk_delay_ms": 0}


async def test_the_readmes_first_example_is_what_get_stream_sends() -> None:
    [example] = FIRST_BYTES.findall(README.read_text(encoding="utf-8"))
    async with proxy(make_config([MOCK])) as client:  # the defaults: resumable streams on
        async with client.stream("GET", "/stream", params={"prompt": "Hi!"}) as response:
            sent = (await response.aread()).decode()
    sid = re.match(r"id: ([\w-]+):0\n", sent)
    assert sid is not None, sent
    assert sent.replace(sid[1], "SID") == re.sub(r"id: [\w-]+:", "id: SID:", example)
