"""Issue 26, item 5: JSON nested about 250 levels deep, in a tool's schema or in a tool call's arguments
in the history, is a 400 naming the nesting limit, up front, on every door and before any upstream; it
once ended in `internal_error` with stack traces on the Anthropic, Gemini and Ollama adapters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_sse_proxy.proxy.doors.body_checks import MAX_JSON_DEPTH
from tests.conftest import RESUME_OFF, payloads, proxy, read_stream
from tests.upstream_fixtures import DIALECTS, mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

USER = {"role": "user", "content": "hi"}


def nested(depth: int) -> dict[str, Any]:
    """A JSON Schema whose JSON nests `depth` levels (each object property is two: itself and `properties`)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range((depth - 1) // 2):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def with_schema(depth: int) -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "deep", "parameters": nested(depth)}}
    return {"messages": [USER], "tools": [tool]}


def with_arguments(depth: int) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "deep", "arguments": json.dumps(nested(depth))}}
    return {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "call_1", "content": "done"}, USER]}


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
@pytest.mark.parametrize("body", [with_schema(250), with_arguments(250)], ids=["schema", "arguments"])
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_deep_nesting_is_a_400_naming_the_limit(dialect: str, body: dict[str, Any], path: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("m", "x", dialect)], **RESUME_OFF)) as client:
        response = await client.post(path, json={**body, "model": "m"})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert f"{MAX_JSON_DEPTH} levels" in message and "nest" in message
    assert up.recorder.attempts == []


# The schema sits 5 levels down the body (tools, a tool, function, parameters).
@pytest.mark.parametrize("body", [with_schema(MAX_JSON_DEPTH - 6), with_arguments(MAX_JSON_DEPTH)],
                         ids=["schema", "arguments"])
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_nesting_within_the_limit_streams(dialect: str, body: dict[str, Any]) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("m", "x", dialect)], **RESUME_OFF)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json={**body, "model": "m"})
    assert response.status_code == 200 and payloads(parsed)[-1]["reason"] in ("stop", "tool_calls")
