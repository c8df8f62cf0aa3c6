"""Issue 26, item 6: the OpenAI door's own errors (before any stream) in OpenAI's shape and with OpenAI's
values, read back through the official `openai` SDK's error classes, with hints that fit the door."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

from llm_sse_proxy.proxy.app import create_app
from tests.conftest import RESUME_OFF, make_config, serve
from tests.test_openai_door import MESSAGES, MOCK, mock_config, sdk

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

KEY = "client-key-1234567890abcdef"


def fields(error: openai.APIStatusError) -> tuple[Any, Any, Any]:
    return error.type, error.param, error.code


@pytest.mark.parametrize(("body", "expected"), [
    ({"temperature": 9}, ("invalid_request_error", "temperature", None)),
    ({"temprature": 1}, ("invalid_request_error", "temprature", None)),
    ({"n": 2}, ("invalid_request_error", "n", None)),
    ({"messages": [{"role": "user"}]}, ("invalid_request_error", "messages.0.content", None)),
    ({"events": ["nope"]}, ("invalid_request_error", "events", None)),
])
async def test_a_bad_field_is_a_bad_request_naming_it(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    async with sdk(mock_config()) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True, extra_body=body)
    kind, param, _ = fields(raised.value)
    assert (kind, param) == expected[:2]
    assert raised.value.code == "invalid_request"  # the proxy's own type, as README's "Errors" says


async def test_an_unknown_model_says_where_this_door_lists_models() -> None:
    async with sdk(mock_config()) as client:
        with pytest.raises(openai.NotFoundError) as completion:
            await client.chat.completions.create(model="nope", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError) as lookup:
            await client.models.retrieve("nope")
    for raised in (completion, lookup):
        assert raised.value.code == "model_not_found" and raised.value.type == "invalid_request_error"
        assert "GET /v1/models" in raised.value.message and "GET /models " not in raised.value.message
    assert completion.value.param == "model"


async def test_a_missing_key_is_openais_invalid_api_key_and_no_talk_of_tokens() -> None:
    config = make_config([MOCK], environ={"CLIENT_KEY": KEY}, auth={"keys": ["${CLIENT_KEY}"]}, **RESUME_OFF)
    async with sdk(config, api_key="wrong-key") as client:
        with pytest.raises(openai.AuthenticationError) as completion:
            await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True)
        with pytest.raises(openai.AuthenticationError) as listing:
            await client.models.list()
    for raised in (completion, listing):
        assert fields(raised.value) == ("invalid_request_error", None, "invalid_api_key")
        assert "token" not in raised.value.message and "Bearer" in raised.value.message


async def test_the_rate_limit_is_openais_rate_limit_exceeded() -> None:
    config = make_config([MOCK], limits={"requests_per_minute": 1, "burst": 1}, **RESUME_OFF)
    async with sdk(config) as client:
        await client.chat.completions.create(model="mock", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(model="mock", messages=MESSAGES)
    assert fields(raised.value) == ("requests", None, "rate_limit_exceeded")
    assert int(raised.value.response.headers["retry-after"]) >= 1


async def test_too_many_messages_is_a_413_naming_messages() -> None:
    config = make_config([MOCK], limits={"max_messages": 1}, **RESUME_OFF)
    async with sdk(config) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="mock", messages=MESSAGES * 2)
    assert raised.value.status_code == 413
    assert fields(raised.value) == ("invalid_request_error", "messages", "payload_too_large")


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "says"), [
    ("POST", "/v1/chat/completions", {"content-type": "text/plain"}, b"{}", 415, "application/json"),
    ("POST", "/v1/chat/completions", {"content-type": "application/json"}, b"{", 400, "not valid JSON"),
    ("GET", "/v1/chat/completions", {}, b"", 405, "use POST /v1/chat/completions"),
    ("POST", "/v1/embeddings", {}, b"", 404, "Invalid URL (POST /v1/embeddings)"),
])
async def test_every_refusal_has_all_four_fields(method: str, path: str, headers: dict[str, str], body: bytes,
                                                 status: int, says: str) -> None:
    async with serve(create_app(mock_config())) as url, httpx2.AsyncClient(base_url=url) as client:
        response = await client.request(method, path, headers=headers, content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and says in error["message"]
    if status == 405:
        assert response.headers["allow"] == "POST"


async def test_the_article_door_keeps_its_own_shape_and_hints() -> None:
    async with serve(create_app(mock_config())) as url, httpx2.AsyncClient(base_url=url) as client:
        response = await client.post("/chat", json={"model": "nope", "messages": MESSAGES})
    assert response.json() == {"error": {"type": "not_found", "message": "unknown model 'nope'; GET /models lists them"}}
