"""Node clients that no one here wrote read the proxy exactly: the WHATWG `eventsource` package over
GET /stream, `eventsource-parser` over fetch POST /chat, and our own sse-client.js beside them.

The npm packages come from tests/node/package-lock.json (`npm ci`, the `npm_packages` fixture).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import anyio
import pytest

from llm_sse_proxy.adapters.mock import split_reply
from llm_sse_proxy.proxy.app import create_app
from tests.conftest import LOAD_TEST_LIMITS, NODE_DIR, make_config, node_and_npm, serve
from tests.test_sse import AWKWARD

CHUNK = 5
ECHO = {"name": "echo", "adapter": "mock", "echo": True, "chunk_chars": CHUNK, "chunk_delay_ms": 0}
WHOLE = {"name": "echo-whole", "adapter": "mock", "echo": True, "chunk_chars": 1_000_000, "chunk_delay_ms": 0}
# One 64 KiB+ delta that a GET can ask for too: newlines, CR, quotes, unicode and emoji all through it.
BIG_REPLY = ('line "one" é 中 🎉👩‍👩‍👧\r\nback\\slash\rend\n' * 2000)[:65536]
BIG = {"name": "big", "adapter": "mock", "reply": BIG_REPLY, "chunk_chars": 1_000_000, "chunk_delay_ms": 0}
SMALL_TEXTS = [text for text in AWKWARD if len(text) < 4000]  # a URL has no room for the 64 KiB one


def cases() -> list[tuple[dict[str, Any], str]]:
    """(case for read_proxy.mjs, the reply it must read)."""
    out: list[tuple[dict[str, Any], str]] = []
    for text in SMALL_TEXTS:
        for client in ("eventsource", "eventsource-parser", "sse-client"):
            out.append(({"client": client, "model": "echo", "text": text}, text))
    for client in ("eventsource-parser", "sse-client"):
        out.append(({"client": client, "model": "echo-whole", "text": AWKWARD[-1]}, AWKWARD[-1]))
    for client in ("eventsource", "eventsource-parser", "sse-client"):
        out.append(({"client": client, "model": "big", "text": "anything"}, BIG_REPLY))
    return out


def expected_deltas(case: dict[str, Any], reply: str) -> list[str]:
    return split_reply(reply, CHUNK if case["model"] == "echo" else 1_000_000)


@pytest.mark.anyio
async def test_node_clients_read_exactly_what_the_proxy_sent(npm_packages: str) -> None:
    table = cases()
    app = create_app(make_config([ECHO, WHOLE, BIG], limits=LOAD_TEST_LIMITS))
    async with serve(app) as base:
        with anyio.fail_after(120):
            done = await anyio.run_process(
                [npm_packages, str(NODE_DIR / "read_proxy.mjs")],
                input=json.dumps({"base": base, "cases": [case for case, _ in table]}).encode(),
                check=False,
            )
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads(done.stdout)
    assert len(results) == len(table)
    for (case, reply), got in zip(table, results, strict=True):
        where = f"{case['client']} on {case['model']}: {case['text'][:40]!r}"
        assert "error" not in got, f"{where}: {got['error']}"
        deltas = expected_deltas(case, reply)
        assert got["texts"] == deltas, where
        assert got["terminate"]["reason"] == "stop", where
        assert got["terminate"]["model"] == case["model"], where
        assert got["terminate"]["usage"]["completion_tokens"] == len(deltas), where
        if "ids" in got:  # <stream id>:<seq>, one stream id (resume is on by default)
            sid = got["ids"][0].rpartition(":")[0]
            assert got["ids"] == [f"{sid}:{i}" for i in range(1, len(deltas) + 2)], where
    assert sum(len(t) >= 65536 for got in results for t in got["texts"]) == 5  # the 64 KiB deltas came through


@pytest.mark.anyio
async def test_node_clients_read_only_the_answer_when_the_stream_carries_more(npm_packages: str) -> None:
    """Reasoning and a tool call in the stream: EventSource's message listener and sse-client's onText see the
    answer only, whether they asked for the named events or not; eventsource-parser, which hands named events to
    its callback too, never gets them unless it asks (it does not here)."""
    reply = "The answer, and nothing else."
    rich = {"name": "rich", "adapter": "mock", "reply": reply, "chunk_chars": CHUNK, "chunk_delay_ms": 0,
            "thinking": "Not for the page.", "tool_calls": [{"name": "f", "arguments": "{}"}]}
    events = ["reasoning", "tool_call", "tool_call_delta", "refusal"]
    table = [{"client": "eventsource", "model": "rich", "text": "hi", "events": events},
             {"client": "eventsource", "model": "rich", "text": "hi"},
             {"client": "eventsource-parser", "model": "rich", "text": "hi"},
             {"client": "sse-client", "model": "rich", "text": "hi", "events": events},
             {"client": "sse-client", "model": "rich", "text": "hi"}]
    async with serve(create_app(make_config([rich], limits=LOAD_TEST_LIMITS))) as base:
        with anyio.fail_after(120):
            done = await anyio.run_process([npm_packages, str(NODE_DIR / "read_proxy.mjs")],
                                           input=json.dumps({"base": base, "cases": table}).encode(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    for case, got in zip(table, json.loads(done.stdout), strict=True):
        assert "error" not in got, f"{case}: {got['error']}"
        assert got["texts"] == split_reply(reply, CHUNK), case
        assert got["terminate"]["reason"] == "tool_calls", case


def test_sse_client_unit_tests_pass() -> None:
    """tests/node/sse-client.test.mjs: the parser and streamChat under node:test."""
    node, _ = node_and_npm()
    done = subprocess.run(
        [node, "--test", str(NODE_DIR / "sse-client.test.mjs")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.MULTILINE)
    assert passed and int(passed.group(1)) >= 20, done.stdout
    assert re.search(r"^# fail 0$", done.stdout, re.MULTILINE), done.stdout
