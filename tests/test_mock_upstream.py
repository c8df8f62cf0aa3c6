"""The mock OpenAI upstream, over real HTTP on 127.0.0.1 (no TestClient/ASGITransport: they buffer bodies)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
import pytest

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY, Recorder, create_mock_upstream_app
from tests.conftest import serve

AUTH = {"authorization": "Bearer test"}
# Line breaks SSE or str.splitlines would split on, JSON escapes, non-BMP and joined emoji, an in-band lookalike.
AWKWARD = 'a\nb\r\nc\rd "q" \\ \\n é 中文 😀👩‍👩‍👧 \u2028 \u2029 \x85 \x00 \t data: [DONE]\n\n'
# s from client close to the recorded upstream close: measured under 1 ms; generous for a loaded machine
CLOSE_DEADLINE = 0.5


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    async with serve(create_mock_upstream_app(recorder)) as base:
        yield recorder, base + "/v1"


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5.0)) as c:
        yield c


def payload(text: str | None = None, model: str = "mock-gpt", **extra: Any) -> dict[str, Any]:
    content = "hello" if text is None else "echo:" + text
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": True, **extra}


def split_events(raw: bytes) -> list[str]:
    # Every event is one `data: ...` line; JSON never holds a raw LF, so splitting on LF LF is exact here.
    assert raw.endswith(b"\n\n"), raw[-80:]
    events = raw[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), events
    return [e[6:].decode() for e in events]


async def post_stream(client: httpx2.AsyncClient, url: str, body: dict, **headers: str) -> tuple[int, list[str]]:
    async with client.stream("POST", url + "/chat/completions", json=body, headers={**AUTH, **headers}) as r:
        raw = await r.aread()
        assert r.status_code != 200 or r.headers["content-type"].startswith("text/event-stream")
        return r.status_code, (split_events(raw) if r.status_code == 200 else [raw.decode()])


def content_of(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def open_and_read(client: httpx2.AsyncClient, url: str, body: dict, n_events: int, **headers: str) -> float:
    """Read n_events, then close the response (and so the TCP connection); return the close time."""
    request = client.build_request("POST", url + "/chat/completions", json=body, headers={**AUTH, **headers})
    response = await client.send(request, stream=True)
    chunks = response.aiter_raw()
    got = b""
    try:
        while got.count(b"\n\n") < n_events:
            got += await chunks.__anext__()
    finally:
        closed = time.monotonic()
        await chunks.aclose()  # close our generator ourselves: an abandoned one warns at GC (httpx2 #1195)
        await response.aclose()
    return closed


@pytest.mark.anyio
async def test_stream_has_the_openai_shape(upstream, client) -> None:
    recorder, url = upstream
    body = payload(stream_options={"include_usage": True})
    status, events = await post_stream(client, url, body)
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(chunks) - 3
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("chatcmpl-")
    assert {(c["object"], c["model"]) for c in chunks} == {("chat.completion.chunk", "mock-gpt")}
    assert all(len(c["choices"][0]["delta"]["content"]) <= 5 for c in chunks[1:-2])
    assert content_of(events) == DEFAULT_REPLY
    attempt = recorder.attempts[-1]
    assert attempt.finished and attempt.fault is None and attempt.closed_at is not None
    assert attempt.chunks_sent == len(chunks) - 3 and attempt.body == body
    assert attempt.headers["authorization"] == "Bearer test" and recorder.count("mock-gpt") == 1


@pytest.mark.anyio
async def test_max_tokens_cuts_with_length_and_no_usage_by_default(upstream, client) -> None:
    _, url = upstream
    _, events = await post_stream(client, url, payload(max_tokens=2))
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 4 and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert content_of(events) == DEFAULT_REPLY[:10] and "usage" not in chunks[-1]


@pytest.mark.anyio
async def test_non_streamed_completion(upstream, client) -> None:
    _, url = upstream
    r = await client.post(url + "/chat/completions", json=payload("hi", stream=False), headers=AUTH)
    data = r.json()
    assert r.status_code == 200 and data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "hi", "refusal": None}
    assert data["choices"][0]["finish_reason"] == "stop" and data["usage"]["completion_tokens"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("text, chunk_chars", [(AWKWARD, "5"), (AWKWARD, "1"), ("é😀\u2028x" * 16384, "4096")])
async def test_echo_is_exact(upstream, client, text: str, chunk_chars: str) -> None:
    _, url = upstream
    status, events = await post_stream(client, url, payload(text), **{"x-mock-chunk-chars": chunk_chars})
    assert status == 200 and content_of(events) == text


@pytest.mark.anyio
async def test_auth_bad_options_and_routes(upstream, client) -> None:
    recorder, url = upstream
    r = await client.post(url + "/chat/completions", json=payload())
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = await client.post(url + "/chat/completions", json=payload(), headers={**AUTH, "x-mock-dorp-after": "1"})
    assert r.status_code == 400 and "dorp_after" in r.json()["error"]["message"]
    r = await client.post(url + "/chat/completions", content=b"{nope", headers=AUTH)
    assert r.status_code == 400
    assert [a.status for a in recorder.attempts] == [401, 400, 400]
    r = await client.get(url + "/models")
    assert "mock-gpt" in [m["id"] for m in r.json()["data"]]
    r = await client.get(url + "/nowhere")
    assert r.status_code == 404 and r.json()["error"]["message"]


@pytest.mark.anyio
async def test_fail_counts_attempts_per_key_and_sends_retry_headers(upstream, client) -> None:
    recorder, url = upstream
    fail = {"x-mock-fail": "2:503", "x-mock-retry-after": "1", "x-mock-retry-after-ms": "250"}
    results = []
    for key in ("a", "b", "a", "a", "b", "b"):
        r = await client.post(url + "/chat/completions", json=payload(), headers={**AUTH, **fail, "x-mock-key": key})
        results.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "250"
            assert r.json()["error"]["type"] == "server_error"
    assert results == [503, 503, 503, 200, 503, 200]
    assert [a.fault for a in recorder.attempts] == ["fail:503"] * 3 + [None, "fail:503", None]
    assert recorder.count() == recorder.count("mock-gpt") == 6
    r = await client.post(url + "/chat/completions", json=payload(),
                          headers={**AUTH, "x-mock-fail": "1:429", "x-mock-error-type": "insufficient_quota"})
    assert r.status_code == 429 and r.json()["error"]["code"] == r.json()["error"]["type"] == "insufficient_quota"


@pytest.mark.anyio
async def test_openai_sdk_parses_the_stream_and_retries_failures(upstream) -> None:
    recorder, url = upstream
    async with openai.AsyncOpenAI(base_url=url, api_key="test", max_retries=0, timeout=5) as sdk:
        stream = await sdk.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}],
                                                   stream=True, stream_options={"include_usage": True})
        async with stream:
            chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_REPLY
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        # The SDK's own retries honour retry-after-ms: two 503s, then a clean stream.
        retrying = sdk.with_options(max_retries=2)
        stream = await retrying.chat.completions.create(
            model="mock-gpt+fail=2:503+retry_after_ms=10+key=sdk", messages=[{"role": "user", "content": "echo:ok"}],
            stream=True)
        async with stream:
            assert [c.choices[0].delta.content async for c in stream] == ["", "ok", None]
    assert recorder.count("mock-gpt+fail=2:503+retry_after_ms=10+key=sdk") == 3


@pytest.mark.anyio
async def test_error_after_makes_the_sdk_raise_api_error(upstream) -> None:
    recorder, url = upstream
    async with openai.AsyncOpenAI(base_url=url, api_key="test", max_retries=0, timeout=5) as sdk:
        stream = await sdk.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}],
                                                   stream=True, extra_headers={"x-mock-error-after": "2"})
        seen = []
        with pytest.raises(openai.APIError) as info:
            async with stream:
                async for chunk in stream:
                    seen.append(chunk.choices[0].delta.content)
    assert not isinstance(info.value, openai.APIStatusError) and info.value.body["type"] == "server_error"
    assert seen == ["", DEFAULT_REPLY[:5], DEFAULT_REPLY[5:10]] and recorder.attempts[-1].fault == "error_after"


@pytest.mark.anyio
async def test_drop_after_is_a_transport_error_not_a_clean_end(upstream, client) -> None:
    recorder, url = upstream
    got = b""
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        headers = {**AUTH, "x-mock-drop-after": "3"}
        async with client.stream("POST", url + "/chat/completions", json=payload(), headers=headers) as r:
            async for part in r.aiter_raw():
                got += part
    assert content_of(split_events(got)) == DEFAULT_REPLY[:15]
    attempt = recorder.attempts[-1]
    await recorder.wait_closed()
    assert (attempt.fault, attempt.chunks_sent, attempt.finished) == ("drop_after", 3, False)


@pytest.mark.anyio
async def test_close_after_ends_cleanly_without_finish_or_done(upstream, client) -> None:
    recorder, url = upstream
    status, events = await post_stream(client, url, payload(), **{"x-mock-close-after": "2"})
    assert status == 200 and "[DONE]" not in events and len(events) == 3
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)
    assert recorder.attempts[-1].closed_at is not None and not recorder.attempts[-1].finished


@pytest.mark.anyio
async def test_malformed_after_sends_bad_json_then_carries_on(upstream, client) -> None:
    _, url = upstream
    _, events = await post_stream(client, url, payload("abcdefghij"), **{"x-mock-malformed-after": "1"})
    assert events[2] == "{not json" and events[-1] == "[DONE]"
    assert content_of(events[:2] + events[3:]) == "abcdefghij"


@pytest.mark.anyio
@pytest.mark.parametrize("headers, n_events", [({"x-mock-stall-after": "1"}, 2), ({"x-mock-first-delay-ms": "5000"}, 1),
                                               ({"x-mock-delay-ms": "5000"}, 1)])
async def test_client_close_while_waiting_is_recorded_at_once(upstream, client, headers, n_events) -> None:
    recorder, url = upstream
    with anyio.fail_after(5):
        closed_by_client = await open_and_read(client, url, payload(), n_events, **headers)
        closed_upstream = await recorder.wait_closed(timeout=2)
    assert 0 <= closed_upstream - closed_by_client < CLOSE_DEADLINE
    assert not recorder.attempts[-1].finished and recorder.attempts[-1].chunks_sent == n_events - 1


@pytest.mark.anyio
async def test_delays_are_applied(upstream, client) -> None:
    _, url = upstream
    start = time.monotonic()
    _, events = await post_stream(client, url, payload("abcdefghijklmno"), **{"x-mock-delay-ms": "30"})
    assert time.monotonic() - start >= 0.09 and content_of(events) == "abcdefghijklmno"
    start = time.monotonic()
    first_chunk_at = await open_and_read(client, url, payload(), 2, **{"x-mock-first-delay-ms": "200"})
    assert first_chunk_at - start >= 0.2


@pytest.mark.anyio
async def test_model_suffix_faults_and_headers_override_them(upstream, client) -> None:
    recorder, url = upstream
    model = "mock-gpt+fail=1:500+retry_after=2+close_after=1"
    status, [error] = await post_stream(client, url, payload(model=model))
    assert status == 500 and json.loads(error)["error"]["type"] == "server_error"
    status, events = await post_stream(client, url, payload(model=model))
    assert status == 200 and len(events) == 2 and json.loads(events[0])["model"] == "mock-gpt"
    status, events = await post_stream(client, url, payload(model=model), **{"x-mock-close-after": "3"})
    assert len(events) == 4 and recorder.count(model) == 3


def test_cli_prints_its_url_and_serves() -> None:
    root = Path(__file__).resolve().parents[1]
    code = "import sys; from mock_upstream import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "--port", "0", "--reply", "cli reply"]
    with subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline().strip()  # bounded by pytest-timeout if the child hangs
            assert line.startswith("mock upstream on http://127.0.0.1:") and line.endswith("/v1")
            for _ in range(100):  # the port is bound before the line is printed; uvicorn may still be starting
                try:
                    r = httpx2.post(line.split()[-1] + "/chat/completions", json=payload(stream=False),
                                    headers=AUTH, timeout=2)
                    break
                except httpx2.ConnectError:
                    time.sleep(0.05)
            else:
                pytest.fail("the CLI server never accepted a connection")
            assert r.json()["choices"][0]["message"]["content"] == "cli reply"
        finally:
            proc.terminate()
            proc.wait(5)
