"""POST /chat takes a body copied from OpenAI's docs: what the upstream has passes on, the rest is a 400."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RESUME_OFF, chat_body, payloads, proxy, read_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

SAMPLING = {"presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 7}
OPENAI_BODY = {
    **SAMPLING,
    "stream": True,  # /chat always streams: ignored
    "max_completion_tokens": 100,
    "response_format": {"type": "json_object"},
    "messages": [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ],
}


def _sent(body: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Where each dialect's request carries the sampling fields."""
    if dialect == "gemini":
        config = body["generationConfig"]
        return {"presence_penalty": config["presencePenalty"], "frequency_penalty": config["frequencyPenalty"],
                "seed": config["seed"]}
    fields = body["options"] if dialect == "ollama" else body
    return {name: fields[name] for name in SAMPLING}


async def test_an_openai_body_streams_and_its_fields_reach_an_openai_upstream() -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")], **RESUME_OFF)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=OPENAI_BODY)
    assert response.status_code == 200
    assert payloads(parsed)[-1]["reason"] == "stop"
    sent = up.recorder.attempts[0].body
    assert _sent(sent, "openai") == SAMPLING
    assert sent["max_tokens"] == 100 and sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0] == {"role": "developer", "content": "Answer briefly."}


@pytest.mark.parametrize("dialect", ["gemini", "ollama"])
async def test_penalties_and_seed_reach_the_apis_that_have_them(dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("m", "gpt", dialect)], **RESUME_OFF)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(**SAMPLING))
    assert response.status_code == 200 and payloads(parsed)[-1]["reason"] == "stop"
    assert _sent(up.recorder.attempts[0].body, dialect) == SAMPLING


@pytest.mark.parametrize(("dialect", "field"), [
    ("anthropic", "seed"),
    ("anthropic", "presence_penalty"),
    ("gemini", "response_format"),
    ("ollama", "response_format"),
])
async def test_a_field_the_model_cannot_take_is_a_400_before_any_upstream_call(dialect: str, field: str) -> None:
    values = {"seed": 1, "presence_penalty": 1.0, "response_format": {"type": "json_object"}}
    async with mock_upstream() as up, proxy(upstream_config([up.model("m", "gpt", dialect)], **RESUME_OFF)) as client:
        response = await client.post("/chat", json=chat_body(**{field: values[field]}))
        door = await client.post("/v1/chat/completions", json=chat_body(model="m", **{field: values[field]}))
    assert response.status_code == door.status_code == 400
    assert field in response.json()["error"]["message"] and "'m'" in response.json()["error"]["message"]
    assert up.recorder.attempts == []


async def test_a_fallback_that_cannot_take_a_field_refuses_it_up_front() -> None:
    async with mock_upstream() as up:
        models = [up.model("gpt", "gpt", fallbacks=["claude"]), up.model("claude", "c", "anthropic")]
        async with proxy(upstream_config(models, **RESUME_OFF)) as client:
            response = await client.post("/chat", json=chat_body(seed=3))
    assert response.status_code == 400 and "'claude'" in response.json()["error"]["message"]
