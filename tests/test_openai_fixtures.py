"""Recorded OpenAI-format streams (tests/fixtures/openai/*.sse, each citing its source) replayed by a
loopback server, through the OpenAI adapter and the whole proxy: text, reasoning, tool calls, the
finish reason and usage, checked exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.conftest import proxy, read_stream, serve
from tests.upstream_fixtures import API_KEY, upstream_config

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
EVERY_EVENT = ["reasoning", "refusal", "tool_call"]


def replaying(body: bytes) -> Starlette:
    """A chat-completions server that answers every request with `body`, one SSE event per write."""

    async def chat(request: Request) -> StreamingResponse:
        await request.body()

        async def events():
            for event in body.split(b"\n\n"):
                if event:
                    yield event + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def replay(name: str) -> list[tuple[str, dict[str, Any]]]:
    async with serve(replaying((FIXTURES / name).read_bytes())) as url:
        model = {"name": "recorded", "adapter": "openai", "base_url": f"{url}/v1", "api_key": API_KEY, "model": "m"}
        async with proxy(upstream_config([model])) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json={"messages": [{"role": "user", "content": "hi"}],
                                                                         "events": EVERY_EVENT})
    return [(event.type, json.loads(event.data)) for event in parsed.events]


def joined(items: list[tuple[str, dict[str, Any]]], kind: str) -> str:
    return "".join(p["text"] for k, p in items if k == kind and "text" in p)


def usage(prompt: int, completion: int, **details: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **details}


CASES = [
    (
        "openai-tool-call.sse", "", "", "",
        [{"index": 0, "id": "call_4XzlGBLtUe9dy3GVNV4jhq7h", "name": "get_weather", "arguments": '{"city":"New York City"}'}],
        "tool_calls", usage(44, 16, reasoning_tokens=0),
    ),
    (
        "openai-refusal.sse", "", "", "I'm sorry, I can't assist with that request.", [],
        "refusal", usage(79, 11, reasoning_tokens=0),
    ),
    (
        "deepseek-reasoning-tool-call.sse", "",
        "The user asks about the weather in San Francisco. I should use the weather tool.", "",
        [{"index": 0, "id": "call_00_IhCAliIHtM9gKpgfqbBV9873", "name": "weather", "arguments": '{"location": "San Francisco"}'}],
        "tool_calls", usage(374, 61, reasoning_tokens=17, cached_tokens=256),
    ),
    ("azure-async-filter-passes.sse", "Color is a", "", "", [], "stop", None),
    ("azure-async-filter-blocked.sse", "Hey Jude,", "", "", [], "content_filter", None),
]


@pytest.mark.parametrize(("name", "text", "reasoning", "refusal", "calls", "reason", "usage_"), CASES,
                         ids=[case[0] for case in CASES])
async def test_recorded_stream(name: str, text: str, reasoning: str, refusal: str, calls: list, reason: str,
                               usage_: dict | None) -> None:
    items = await replay(name)
    terminate = items[-1][1]
    assert [p.get("action") for _, p in items].count("terminate") == 1 and terminate["action"] == "terminate"
    assert joined(items[:-1], "message") == text
    assert joined(items, "reasoning") == reasoning
    assert joined(items, "refusal") == refusal
    assert [p for k, p in items if k == "tool_call"] == calls
    assert terminate["reason"] == reason
    assert terminate.get("usage") == usage_
    assert terminate.get("tool_calls", []) == calls
