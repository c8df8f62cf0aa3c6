"""The `openai_responses` adapter: recorded Responses streams (tests/fixtures/openai_responses/, each citing
its source) replayed by a loopback server through the whole proxy; the mock upstream's Responses dialect
(its faults run in the shared fault tests, tests/upstream_fixtures.py's DIALECTS); and the request body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from llm_sse_proxy.adapters.openai_responses import ResponsesOptions, request_body
from llm_sse_proxy.proxy.deltas import ChatRequest, ImagePart, Message, TextPart, Tool, ToolCall
from llm_sse_proxy.proxy.errors import UpstreamRejected
from tests.conftest import proxy, read_stream, serve
from tests.upstream_fixtures import API_KEY, mock_upstream, model_at, upstream_config

FIXTURES = Path(__file__).parent / "fixtures" / "openai_responses"
EVERY_EVENT = ["reasoning", "refusal", "tool_call"]
OPTIONS = ResponsesOptions(api_key="k", model="gpt-5")
SUMMARY = ("**Calculating step-by-step using calculator**\n\nI'll compute 12 plus 7, then multiply the result by 3, "
           "and finally multiply that by 10, reporting the final product.")


def replaying(body: bytes, seen: list[dict[str, Any]]) -> Starlette:
    """A Responses server that answers every request with `body`, one SSE event per write."""

    async def responses(request: Request) -> StreamingResponse:
        seen.append({"body": json.loads(await request.body()), "headers": dict(request.headers)})

        async def events():
            for event in body.split(b"\n\n"):
                if event:
                    yield event + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/responses", responses, methods=["POST"])])


async def replay(name: str, **chat: Any) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    async with serve(replaying((FIXTURES / name).read_bytes(), seen)) as url:
        model = {"name": "recorded", "adapter": "openai_responses", "base_url": f"{url}/v1", "api_key": API_KEY,
                 "model": "gpt-5.1", "reasoning_summary": "detailed"}
        async with proxy(upstream_config([model])) as client:
            body = {"messages": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "hi"}],
                    "events": EVERY_EVENT, **chat}
            _, parsed = await read_stream(client, "POST", "/chat", json=body)
    return [(event.type, json.loads(event.data)) for event in parsed.events], seen


def joined(items: list[tuple[str, dict[str, Any]]], kind: str) -> str:
    return "".join(p["text"] for k, p in items if k == kind and "text" in p)


def usage(prompt: int, completion: int, **details: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **details}


CASES = [
    ("gpt-4o-mini-text.sse", "OK", "", [], "stop", usage(12, 2, reasoning_tokens=0, cached_tokens=0)),
    ("gpt-5.1-function-call.sse", "", "",
     [{"index": 0, "id": "call_2FQdm3Br7Qb35YUBSkDR7kue", "name": "get_weather", "arguments": '{"city":"Beijing"}'}],
     "tool_calls", usage(45, 25, reasoning_tokens=0, cached_tokens=0)),
    ("gpt-5.1-codex-max-reasoning-summary.sse", "", SUMMARY,
     [{"index": 0, "id": "call_AB6AaRZ1FYZB2RwS6A5vbdqn", "name": "calculator", "arguments": '{"a":12,"b":7,"op":"add"}'}],
     "tool_calls", usage(134, 28, reasoning_tokens=0, cached_tokens=0)),
]


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("name", "text", "reasoning", "calls", "reason", "usage_"), CASES,
                         ids=[case[0] for case in CASES])
async def test_recorded_streams_replay_exactly(name: str, text: str, reasoning: str, calls: list[dict[str, Any]],
                                               reason: str, usage_: dict[str, int]) -> None:
    items, seen = await replay(name)
    terminate = items[-1][1]
    assert joined(items, "message") == text and joined(items, "reasoning") == reasoning
    assert [p for k, p in items if k == "tool_call"] == calls
    assert (terminate["reason"], terminate["usage"], terminate["model"]) == (reason, usage_, "recorded")
    [request] = seen
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["body"] == {"model": "gpt-5.1", "stream": True, "store": False, "instructions": "Be exact.",
                               "input": [{"role": "user", "content": "hi"}], "reasoning": {"summary": "detailed"}}


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_a_recorded_quota_error_ends_the_stream_without_a_retry() -> None:
    items, seen = await replay("gpt-5-nano-insufficient-quota.sse")
    assert [k for k, _ in items] == ["message"] and len(seen) == 1  # a rejection: the same request would fail again
    error = items[-1][1]["error"]
    assert error["type"] == "upstream_rejected" and "insufficient_quota: You exceeded your current quota" in error["message"]


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("summary", [None, "auto"])
async def test_the_mock_dialect_streams_a_summary_only_when_configured(summary: str | None) -> None:
    async with mock_upstream(reply="Sunny in Paris.") as upstream:
        model = model_at(upstream.url, "openai_responses", "gpt", "mock-gpt", reasoning_summary=summary)
        async with proxy(upstream_config([model])) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json={
                "messages": [{"role": "user", "content": "Weather?"}], "events": EVERY_EVENT,
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})
    items = [(event.type, json.loads(event.data)) for event in parsed.events]
    terminate = items[-1][1]
    assert joined(items, "message") == "Sunny in Paris."
    assert joined(items, "reasoning") == ("The user wants the canned reply. I will stream it in small pieces."
                                          if summary else "")
    assert [(p["name"], json.loads(p["arguments"])) for k, p in items if k == "tool_call"] == \
        [("get_weather", {"location": "Paris", "unit": "celsius"})]
    assert terminate["reason"] == "tool_calls"
    assert terminate["usage"]["reasoning_tokens"] == (2 if summary else 0) and terminate["usage"]["cached_tokens"] > 0
    sent = upstream.recorder.attempts[-1].body
    assert sent.get("reasoning") == ({"summary": "auto"} if summary else None) and sent["store"] is False


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_max_output_tokens_ends_an_incomplete_response_with_length() -> None:
    async with mock_upstream(reply="A long answer cut short.") as upstream:
        model = model_at(upstream.url, "openai_responses", "gpt", "mock-gpt")
        async with proxy(upstream_config([model])) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json={
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    terminate = json.loads(parsed.events[-1].data)
    assert "".join(json.loads(e.data).get("text", "") for e in parsed.events[:-1]) == "A lon" + "g ans"
    assert terminate["reason"] == "length" and upstream.recorder.attempts[-1].body["max_output_tokens"] == 2


def test_a_conversation_becomes_input_items_without_reasoning_items() -> None:
    request = ChatRequest(messages=(
        Message("system", "Be brief."), Message("developer", "Use tools."),
        Message("user", (TextPart("What is this?"), ImagePart("https://example.org/a.png", "low"))),
        Message("assistant", "Let me look.", tool_calls=(ToolCall("call_1", "look", '{"at": "a.png"}'),)),
        Message("tool", "a cat", tool_call_id="call_1"),
    ), max_tokens=50, temperature=0.2, tools=(Tool("look", "Look at an image", {"type": "object"}),),
        tool_choice={"name": "look"}, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {}}})
    body = request_body(request, ResponsesOptions(api_key="k", model="o4-mini", reasoning_effort="low",
                                                  reasoning_summary="auto"))
    assert body == {
        "model": "o4-mini", "stream": True, "store": False, "instructions": "Be brief.\n\nUse tools.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                         {"type": "input_image", "image_url": "https://example.org/a.png", "detail": "low"}]},
            {"role": "assistant", "content": "Let me look."},
            {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": '{"at": "a.png"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        ],
        "max_output_tokens": 50, "temperature": 0.2, "reasoning": {"effort": "low", "summary": "auto"},
        "tools": [{"type": "function", "name": "look", "description": "Look at an image",
                   "parameters": {"type": "object"}, "strict": False}],
        "tool_choice": {"type": "function", "name": "look"},
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {}}},
    }
    assert all(item.get("type") != "reasoning" for item in body["input"])


def test_stop_sequences_are_refused_rather_than_ignored() -> None:
    with pytest.raises(UpstreamRejected, match="no stop sequences"):
        request_body(ChatRequest(messages=(Message("user", "hi"),), stop=("END",)), OPTIONS)
