"""The OpenAI-compatible door, driven by the official `openai` Python SDK over real HTTP.

The SDK's own retries are off (max_retries=0): the proxy's are under test, and a retried request would
hide which status the first answer had.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai
import pytest

from llm_sse_proxy.proxy.app import Shutdown, create_app
from llm_sse_proxy.proxy.config import Config
from tests.conftest import RESUME_OFF, make_config, serve
from tests.upstream_fixtures import DIALECTS, mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MESSAGES = [{"role": "user", "content": "hi"}]
REPLY = "Hello from the door, in pieces."
MOCK = {"name": "mock", "adapter": "mock", "chunk_delay_ms": 0, "reply": REPLY, "chunk_chars": 4}


@asynccontextmanager
async def sdk(config: Config, api_key: str = "unused") -> AsyncIterator[openai.AsyncOpenAI]:
    """The proxy under uvicorn, and the SDK set up as the README says."""
    async with serve(create_app(config)) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=10) as client:
            yield client


def mock_config(**model: Any) -> Config:
    return make_config([{**MOCK, **model}], **RESUME_OFF)


async def collect(stream: Any) -> tuple[dict[str, str], list[Any]]:
    """The streamed fields joined, and the chunks."""
    fields: dict[str, str] = {}
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            for name, value in choice.delta.model_dump(exclude_none=True).items():
                if isinstance(value, str):
                    fields[name] = fields.get(name, "") + value
    return fields, chunks


async def test_streamed_chat_is_the_reply_then_finish_then_usage() -> None:
    async with sdk(mock_config()) as client:
        stream = await client.chat.completions.create(
            model="mock", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        fields, chunks = await collect(stream)
    assert fields == {"role": "assistant", "content": REPLY}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"


async def test_streamed_chat_without_include_usage_has_no_usage_chunk() -> None:
    async with sdk(mock_config()) as client:
        _, chunks = await collect(await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


async def test_one_completion_without_stream() -> None:
    async with sdk(mock_config()) as client:
        completion = await client.chat.completions.create(model="mock", messages=MESSAGES, max_completion_tokens=50)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_models_list_and_retrieve() -> None:
    config = make_config([MOCK, {**MOCK, "name": "other"}], **RESUME_OFF)
    async with sdk(config) as client:
        ids = [model.id async for model in client.models.list()]
        assert ids == ["mock", "other"]
        assert (await client.models.retrieve("other")).id == "other"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("nope")


async def test_reasoning_tool_calls_and_usage_details_stream_in_openai_fields() -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris"}'}, {"name": "get_time", "arguments": "{}"}]
    async with sdk(mock_config(thinking="Let me think.", tool_calls=calls)) as client:
        stream = await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True)
        fields, chunks = await collect(stream)
    assert fields["reasoning_content"] == "Let me think." and fields["content"] == REPLY
    pieces = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    names = {p.index: p.function.name for p in pieces if p.function and p.function.name}
    arguments = {i: "".join(p.function.arguments or "" for p in pieces if p.index == i) for i in names}
    assert names == {0: "get_weather", 1: "get_time"}
    assert arguments == {0: '{"city": "Paris"}', 1: "{}"}
    assert all(p.id and p.type == "function" for p in pieces if p.function and p.function.name)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_reasoning_and_tool_calls_in_one_completion() -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    async with sdk(mock_config(thinking="Hmm.", tool_calls=calls)) as client:
        completion = await client.chat.completions.create(model="mock", messages=MESSAGES)
    message = completion.choices[0].message
    assert message.model_extra == {"reasoning_content": "Hmm."}
    assert message.tool_calls is not None and [(c.function.name, c.function.arguments) for c in message.tool_calls] \
        == [("get_weather", '{"city": "Paris"}')]
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_a_refusal_is_delta_refusal_and_message_refusal() -> None:
    async with sdk(mock_config(refusal="I can't help with that.")) as client:
        fields, chunks = await collect(await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True))
        completion = await client.chat.completions.create(model="mock", messages=MESSAGES)
    assert fields["refusal"] == "I can't help with that." and chunks[-1].choices[0].finish_reason == "stop"
    assert completion.choices[0].message.refusal == "I can't help with that."


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("status", "error"), [
    (429, openai.RateLimitError),  # the upstream's limit, after the proxy's retries
    (400, openai.BadRequestError),  # a request the upstream refused
    (503, openai.InternalServerError),  # an upstream down: 502 from the proxy
    (401, openai.InternalServerError),  # the proxy's own upstream key refused: not the client's key
])
async def test_upstream_error_before_the_first_token_is_the_matching_status(status: int, error: type, stream: bool) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", f"gpt+fail=9:{status}")], **RESUME_OFF)
        async with sdk(config) as client:
            with pytest.raises(error) as raised:
                await client.chat.completions.create(model="gpt", messages=MESSAGES, stream=stream)
    assert raised.value.status_code == (status if status in (400, 429) else 502)
    body = raised.value.body
    assert isinstance(body, dict) and body["code"] in ("upstream_unavailable", "upstream_rejected"), body
    assert "sk-test" not in json.dumps(body)


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"model": "nope"}, 404, openai.NotFoundError),
    ({"temperature": 9}, 400, openai.BadRequestError),
    ({"n": 2}, 400, openai.BadRequestError),
])
async def test_the_proxys_own_refusals_are_the_matching_status(body: dict, status: int, error: type) -> None:
    async with sdk(mock_config()) as client:
        with pytest.raises(error) as raised:
            await client.chat.completions.create(**{"model": "mock", "messages": MESSAGES, "stream": True, **body})
    assert raised.value.status_code == status


async def test_client_keys_are_the_sdks_api_key() -> None:
    config = make_config([MOCK], environ={"CLIENT_KEY": "client-key-1234567890abcdef"},
                         auth={"keys": ["${CLIENT_KEY}"]}, **RESUME_OFF)
    async with sdk(config, api_key="client-key-1234567890abcdef") as client:
        assert (await client.chat.completions.create(model="mock", messages=MESSAGES)).choices[0].message.content == REPLY
    async with sdk(config, api_key="wrong-key") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("fault", ["drop_after=2", "close_after=2"])
async def test_a_cut_after_the_first_token_raises_in_the_sdk(dialect: str, fault: str) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", f"gpt+{fault}", dialect)], **RESUME_OFF)
        async with sdk(config) as client:
            stream = await client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
            seen = []
            with pytest.raises(openai.APIError) as raised:
                async for chunk in stream:
                    seen.append(chunk)
            # And without stream: nothing was sent yet, so the same cut is a plain 502.
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert any(c.choices and c.choices[0].delta.content for c in seen)  # the cut came after real text
    assert not any(c.choices and c.choices[0].finish_reason for c in seen)
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "truncated"


@pytest.mark.parametrize("stream", [True, False])
async def test_client_abort_closes_the_upstream_within_a_second(stream: bool) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+delay_ms=200")], **RESUME_OFF)
        async with sdk(config) as client:
            if stream:
                response = await client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
                async for chunk in response:
                    if chunk.choices and chunk.choices[0].delta.content:
                        break
                await response.close()
            else:  # the SDK's timeout ends the request the way a closed tab does
                with pytest.raises(openai.APITimeoutError):
                    await client.chat.completions.create(model="gpt", messages=MESSAGES, timeout=0.5)
            left = time.monotonic()
            closed = await up.recorder.wait_closed(0, timeout=5)
    assert closed - left < 1.0
    assert not up.recorder.attempts[0].finished


async def test_metrics_and_the_rate_limit_count_the_door_like_chat() -> None:
    config = make_config([MOCK], limits={"requests_per_minute": 1, "burst": 2}, **RESUME_OFF)
    async with serve(create_app(config)) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            await client.chat.completions.create(model="mock", messages=MESSAGES)
            _, _ = await collect(await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True))
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True)
        async with httpx2.AsyncClient(base_url=url) as plain:
            metrics = (await plain.get("/metrics")).text
    assert 'llm_proxy_streams_total{model="mock",reason="stop"} 2.0' in metrics
    assert 'llm_proxy_rejected_requests_total{reason="rate_limited"} 1.0' in metrics


async def test_keep_alive_pings_after_the_first_chunk_do_not_disturb_the_sdk() -> None:
    config = make_config([{**MOCK, "chunk_delay_ms": 60}], server={"ping_interval": 0.02}, **RESUME_OFF)
    async with sdk(config) as client:
        fields, _ = await collect(await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True))
        async with httpx2.AsyncClient(base_url=str(client.base_url)) as plain:
            raw = (await plain.post("chat/completions", json={"messages": MESSAGES, "stream": True})).content
    assert fields["content"] == REPLY
    assert b"\n: ping\n\n" in raw and raw.index(b": ping") > raw.index(b"data: ")  # pings came, after the head


async def test_the_door_streams_with_resumable_streams_on() -> None:
    async with sdk(make_config([MOCK])) as client:  # resume on, as in the shipped config
        fields, _ = await collect(await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True))
    assert fields["content"] == REPLY


async def test_shutdown_ends_a_started_stream_with_an_error_and_a_waiting_one_with_503() -> None:
    shutdown = Shutdown(grace=0.1)
    config = make_config([{**MOCK, "chunk_delay_ms": 100}, {**MOCK, "name": "slow", "first_token_delay_ms": 10_000}],
                         **RESUME_OFF)
    async with serve(create_app(config, shutdown=shutdown)) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=10) as client:
            stream = await client.chat.completions.create(model="mock", messages=MESSAGES, stream=True)
            await stream.__anext__()
            shutdown.begin()
            with pytest.raises(openai.APIError) as raised:
                async for _ in stream:
                    pass
            with pytest.raises(openai.InternalServerError) as waiting:  # started after the grace: ended at once
                await client.chat.completions.create(model="slow", messages=MESSAGES, stream=True)
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "shutdown"
    assert waiting.value.status_code == 503


async def test_a_fallback_in_another_dialect_answers_through_the_door() -> None:
    async with mock_upstream() as up:
        models = [up.model("gpt", "gpt+fail=99:503", fallbacks=["claude"]), up.model("claude", "c", "anthropic")]
        async with sdk(upstream_config(models, **RESUME_OFF)) as client:
            fields, chunks = await collect(await client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True))
    assert fields["content"] and chunks[-1].choices[0].finish_reason == "stop"
    assert [a.model for a in up.recorder.attempts][-1] == "c"  # the OpenAI upstream failed; the Anthropic one answered


async def test_an_openai_upstreams_reasoning_and_tool_calls_come_out_in_openai_fields() -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+reasoning=3+tool_calls=2"),
                                  up.model("bad", "gpt+tool_calls=2+bad_tool_args=1")], **RESUME_OFF)
        async with sdk(config) as client:
            fields, chunks = await collect(await client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True))
            whole = await client.chat.completions.create(model="gpt", messages=MESSAGES)
            stream = await client.chat.completions.create(model="bad", messages=MESSAGES, stream=True)
            with pytest.raises(openai.APIError) as raised:
                async for _ in stream:
                    pass
    assert fields["reasoning_content"] and fields["content"] and chunks[-1].choices[0].finish_reason == "tool_calls"
    calls = whole.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert all(json.loads(c.function.arguments) for c in calls)
    assert whole.choices[0].message.model_extra["reasoning_content"] == fields["reasoning_content"]
    # Arguments that are not JSON: the call cannot be run, so the answer fails rather than finishing.
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "invalid_tool_call"


@pytest.mark.parametrize("body", [{"stream": True}, {"stream": False}, {"stream": True, "model": "nope"}])
async def test_a_browser_origin_gets_cors_headers_on_every_door_answer(body: dict) -> None:
    config = make_config([MOCK], server={"cors_origins": ["https://app.example"]}, **RESUME_OFF)
    async with serve(create_app(config)) as url, httpx2.AsyncClient(base_url=url) as client:
        response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, **body},
                                     headers={"origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["x-request-id"]
