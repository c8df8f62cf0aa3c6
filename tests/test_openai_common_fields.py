"""Issue 26, item 7: the fields the OpenAI SDKs and frameworks send are accepted, one test per field (the
table in docs/openai-fields.md): passed on to the APIs that have them, left out where harmless, and
refused (400 naming the field) only where the answer could not be what was asked for."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from llm_sse_proxy.proxy.app import create_app
from tests.conftest import RESUME_OFF, serve
from tests.test_openai_door import MESSAGES
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
PREDICTION = {"type": "content", "content": "Hello"}

# (field, value, what an OpenAI-compatible upstream is sent: the value, or None when it is left out)
ACCEPTED = [
    ("user", "end-user-7", "end-user-7"),
    ("parallel_tool_calls", False, False),
    ("parallel_tool_calls", True, None),  # every API's default: nothing to say
    ("reasoning_effort", "low", "low"),
    ("service_tier", "flex", "flex"),
    ("verbosity", "low", "low"),
    ("prompt_cache_key", "thread-42", "thread-42"),
    ("safety_identifier", "user-hash-1", "user-hash-1"),
    ("prediction", PREDICTION, PREDICTION),
    ("logit_bias", {"50256": -100}, {"50256": -100}),
    ("metadata", {"app": "demo"}, None),  # storing is the operator's decision, not a client's
    ("store", True, None),
    ("logprobs", False, None),
    ("top_logprobs", 0, None),
    ("modalities", ["text"], None),
    ("n", 1, None),
]
REFUSED = [
    ("n", 2),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("modalities", ["text", "audio"]),
]


async def ask(up_models: list[dict[str, Any]], stream: bool, **fields: Any) -> Any:
    async with serve(create_app(upstream_config(up_models, **RESUME_OFF))) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=10) as client:
            reply = await client.chat.completions.create(model="m", messages=MESSAGES, stream=stream, **fields)
            if stream:
                return [chunk async for chunk in reply]
            return reply


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("field", "value", "sent"), ACCEPTED, ids=[f"{c[0]}={c[1]}" for c in ACCEPTED])
async def test_an_sdk_field_is_accepted_and_reaches_an_openai_upstream_as_documented(
        field: str, value: Any, sent: Any, stream: bool) -> None:
    async with mock_upstream() as up:
        await ask([up.model("m", "gpt")], stream, tools=TOOLS, **{field: value})
    body = up.recorder.attempts[0].body
    assert body.get(field) == sent, body


@pytest.mark.parametrize(("field", "value"), REFUSED, ids=[f"{c[0]}={c[1]}" for c in REFUSED])
async def test_what_cannot_be_honoured_is_a_400_naming_the_field(field: str, value: Any) -> None:
    async with mock_upstream() as up:
        with pytest.raises(openai.BadRequestError) as raised:
            await ask([up.model("m", "gpt")], True, **{field: value})
    assert raised.value.param == field and up.recorder.attempts == []


async def test_anthropic_gets_the_user_and_one_tool_call_at_a_time() -> None:
    async with mock_upstream() as up:
        await ask([up.model("m", "claude", "anthropic")], True, tools=TOOLS, user="end-user-7",
                  parallel_tool_calls=False, reasoning_effort="low", store=True)
    body = up.recorder.attempts[0].body
    assert body["metadata"] == {"user_id": "end-user-7"}
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "reasoning_effort" not in body and "store" not in body


@pytest.mark.parametrize(("dialect", "field", "value"), [
    ("anthropic", "logit_bias", {"50256": -100}),
    ("gemini", "parallel_tool_calls", False),
    ("ollama", "parallel_tool_calls", False),
    ("gemini", "logit_bias", {"50256": -100}),
])
async def test_a_field_a_native_api_cannot_honour_is_refused_up_front(dialect: str, field: str, value: Any) -> None:
    async with mock_upstream() as up:
        with pytest.raises(openai.BadRequestError) as raised:
            await ask([up.model("m", "x", dialect)], True, tools=TOOLS, **{field: value})
    assert raised.value.param == field and "'m'" in raised.value.message and up.recorder.attempts == []


@pytest.mark.parametrize("dialect", ["gemini", "ollama"])
async def test_the_harmless_fields_are_accepted_by_every_api(dialect: str) -> None:
    async with mock_upstream() as up:
        chunks = await ask([up.model("m", "x", dialect)], True, user="u", reasoning_effort="low", service_tier="auto",
                           metadata={"a": "b"}, store=False, logprobs=False, parallel_tool_calls=True)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "user" not in up.recorder.attempts[0].body
