"""The mock upstream's native dialects over real HTTP: keys, errors in each dialect's shape, the fault
options they play, and `llm-sse-proxy mock-upstream` serving them beside OpenAI's."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx2
import pytest

from llm_sse_proxy.mock_upstream import Recorder, create_mock_upstream_app
from tests.conftest import serve

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "echo:hi"}]
REQUESTS = {  # dialect: (path, headers with a key, a streaming body)
    "anthropic": ("/v1/messages", {"x-api-key": "k"},
                  {"model": "claude", "max_tokens": 100, "messages": HI, "stream": True}),
    "gemini": ("/v1beta/models/gem:streamGenerateContent?alt=sse", {"x-goog-api-key": "k"},
               {"contents": [{"role": "user", "parts": [{"text": "echo:hi"}]}]}),
    "ollama": ("/api/chat", {}, {"model": "llama", "messages": HI}),
}


async def post(url: str, dialect: str, *, headers: dict | None = None, model: str | None = None, **body_changes):
    path, key, body = REQUESTS[dialect]
    if model is not None:
        path, body = path.replace("gem:", f"{model}:"), {**body, "model": model}
    async with httpx2.AsyncClient(timeout=5) as client:
        return await client.post(url + path, json={**body, **body_changes}, headers=key if headers is None else headers)


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
async def test_a_missing_key_is_401_in_the_dialect_s_shape(dialect: str) -> None:
    async with serve(create_mock_upstream_app()) as url:
        response = await post(url, dialect, headers={})
    body = response.json()
    assert response.status_code == 401
    if dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    else:
        assert body["error"]["code"] == 401 and body["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(("dialect", "status", "expected"), [
    ("anthropic", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Mock failure 1 of 1 for key 'm+fail=1:529'."},
                        "request_id": "req_mock"}),
    ("gemini", 429, {"error": {"code": 429, "message": "Mock failure 1 of 1 for key 'm+fail=1:429'.",
                               "status": "RESOURCE_EXHAUSTED"}}),
    ("ollama", 500, {"error": "Mock failure 1 of 1 for key 'm+fail=1:500'."}),
])
async def test_scripted_failures_speak_the_dialect(dialect: str, status: int, expected: dict) -> None:
    recorder = Recorder()
    async with serve(create_mock_upstream_app(recorder)) as url:
        failed = await post(url, dialect, model=f"m+fail=1:{status}")
        answered = await post(url, dialect, model=f"m+fail=1:{status}")
    assert (failed.status_code, failed.json()) == (status, expected)
    assert answered.status_code == 200 and [a.status for a in recorder.attempts] == [status, 200]


async def test_gemini_puts_retry_after_in_retry_info() -> None:
    async with serve(create_mock_upstream_app()) as url:
        response = await post(url, "gemini", model="m+fail=1:429+retry_after_ms=1500")
    assert "retry-after" not in response.headers
    assert response.json()["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]


@pytest.mark.parametrize("dialect", sorted(REQUESTS))
@pytest.mark.parametrize(("change", "said"), [
    ({"model": "m+big_after=1"}, "big_after is not played by this dialect"),
    ({"model": "m+colour=blue"}, "unknown mock option"),
])
async def test_bad_options_are_a_400(dialect: str, change: dict, said: str) -> None:
    async with serve(create_mock_upstream_app()) as url:
        response = await post(url, dialect, model=change["model"])
    assert response.status_code == 400 and said in response.text


@pytest.mark.parametrize(("dialect", "change"), [("anthropic", {"stream": False}), ("ollama", {"stream": False}),
                                                 ("anthropic", {"messages": [{"role": "system", "content": "x"}]})])
async def test_what_the_mock_does_not_serve_is_a_400(dialect: str, change: dict) -> None:
    async with serve(create_mock_upstream_app()) as url:
        response = await post(url, dialect, **change)
    assert response.status_code == 400


@pytest.mark.parametrize("dialect", sorted(REQUESTS))
async def test_the_cli_serves_every_dialect(dialect: str) -> None:
    process = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.proxy", "mock-upstream", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+)/v1", process.stdout.readline()).group(1)  # type: ignore[union-attr]
        response = await post(url, dialect)
    finally:
        process.terminate()
        process.wait(10)
    assert response.status_code == 200
    text = response.text
    assert "hi" in text and ('"done":true' in text or "message_stop" in text or '"finishReason":"STOP"' in text)
    if dialect == "ollama":
        assert response.headers["content-type"] == "application/x-ndjson"
        assert all(json.loads(line) for line in text.splitlines())
