"""Issue 26, item 15: refusals that say what to do. A misspelt field gets a did-you-mean (as the config
loader's errors do), a `prompt` body is pointed at `messages` and GET /stream, GET /chat gets a 405 that
says POST, and a prompt over the size limit names the setting."""

from __future__ import annotations

import pytest

from tests.conftest import RESUME_OFF, make_config, proxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("body", "says"), [
    ({"messages": USER, "temprature": 0.5}, "temprature: unknown field; did you mean 'temperature'?"),
    ({"messages": USER, "max_token": 5}, "max_token: unknown field; did you mean 'max_tokens'?"),
    ({"messages": [{"role": "user", "contnet": "hi"}]}, "messages.0.contnet: unknown field; did you mean 'content'?"),
    ({"prompt": "hi"}, 'prompt: a chat body takes messages, not a prompt: {"messages"'),
])
async def test_a_bad_body_says_what_was_meant(body: dict, says: str) -> None:
    async with proxy(make_config(**RESUME_OFF)) as client:
        for path in ("/chat", "/v1/chat/completions"):
            response = await client.post(path, json=body)
            assert response.status_code == 400 and response.json()["error"]["message"].startswith(says), response.text
    if "prompt" in body:
        assert "GET /stream" in response.json()["error"]["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_chat_by_another_method_is_a_405_that_says_post(method: str) -> None:
    async with proxy(make_config(**RESUME_OFF)) as client:
        response = await client.request(method, "/chat")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    error = response.json()["error"]
    assert error["type"] == "method_not_allowed" and "takes POST" in error["message"] and "GET /stream" in error["message"]


async def test_a_prompt_over_the_limit_names_the_setting() -> None:
    async with proxy(make_config(limits={"max_chars": 100}, **RESUME_OFF)) as client:
        response = await client.post("/chat", json={"messages": [{"role": "user", "content": "x" * 101}]})
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "messages: more than 100 characters in all (limits.max_chars)"
