"""The Anthropic Messages door, driven by the official `anthropic` Python SDK over real HTTP.

The SDK's own retries are off (max_retries=0): the proxy's are under test, and a retried request would
hide which status the first answer had.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx2
import pytest

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.config import Config
from tests.conftest import RESUME_OFF, make_config, serve
from tests.upstream_fixtures import mock_upstream, model_at, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MESSAGES = [{"role": "user", "content": "hi"}]
REPLY = "Hello from the door, in pieces."
THOUGHT = "Let me think about it."
MOCK = {"name": "mock", "adapter": "mock", "chunk_delay_ms": 0, "reply": REPLY, "chunk_chars": 4}
CALL = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
KEY = "door-client-key-0123456789"


@asynccontextmanager
async def sdk(config: Config, **client: Any) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The proxy under uvicorn, and the SDK pointed at it as the README says."""
    client.setdefault("api_key", "unused")
    async with serve(create_app(config)) as url:
        async with anthropic.AsyncAnthropic(base_url=url, max_retries=0, timeout=10, **client) as sdk_client:
            yield sdk_client


def mock_config(**model: Any) -> Config:
    return make_config([{**MOCK, **model}], **RESUME_OFF)


def keyed_config(**top: Any) -> Config:
    digest = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
    return make_config([MOCK], auth={"keys": [digest]}, **RESUME_OFF, **top)


async def test_create_is_one_message_with_the_reply_and_usage() -> None:
    async with sdk(mock_config()) as client:
        message = await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == REPLY  # type: ignore[union-attr]
    assert (message.role, message.model, message.stop_reason) == ("assistant", "mock", "end_turn")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.id.startswith("msg_")


async def test_stream_text_and_the_final_message() -> None:
    async with sdk(mock_config()) as client:
        async with client.messages.stream(model="mock", max_tokens=100, messages=MESSAGES) as stream:
            types = [event.type async for event in stream]
            final = await stream.get_final_message()
    assert final.content[0].text == REPLY  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.model == "mock" and final.usage.output_tokens > 0
    assert types[0] == "message_start" and types[1] == "content_block_start"
    assert types[-4:] == ["text", "content_block_stop", "message_delta", "message_stop"]
    assert types.count("text") == len(REPLY) // 4 + 1


async def test_thinking_streams_as_a_thinking_block_before_the_text() -> None:
    async with sdk(mock_config(thinking=THOUGHT)) as client:
        async with client.messages.stream(model="mock", max_tokens=2000, messages=MESSAGES,
                                          thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
            thinking = "".join([event.thinking async for event in stream if event.type == "thinking"])
            final = await stream.get_final_message()
        without = await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
    assert thinking == THOUGHT
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == THOUGHT and final.content[1].text == REPLY  # type: ignore[union-attr]
    assert [block.type for block in without.content] == ["text"]  # thinking not asked for: not shown


async def test_thinking_in_one_message() -> None:
    async with sdk(mock_config(thinking=THOUGHT)) as client:
        message = await client.messages.create(model="mock", max_tokens=2000, messages=MESSAGES,
                                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content] == \
        [("thinking", THOUGHT), ("text", REPLY)]


async def test_tool_use_streams_input_json_and_ends_with_tool_use() -> None:
    async with sdk(mock_config(tool_calls=[CALL])) as client:
        async with client.messages.stream(model="mock", max_tokens=100, messages=MESSAGES, tools=[WEATHER]) as stream:
            pieces = [event.partial_json async for event in stream if event.type == "input_json"]
            final = await stream.get_final_message()
    assert "".join(pieces) == CALL["arguments"] and len(pieces) > 1
    assert [block.type for block in final.content] == ["text", "tool_use"]
    call = final.content[1]
    assert (call.name, call.input, call.id) == ("get_weather", {"city": "Paris", "unit": "celsius"}, "call_mock_0")  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


async def test_a_tool_result_goes_back_as_the_next_turn() -> None:
    async with sdk(mock_config(tool_calls=[CALL])) as client:
        first = await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES, tools=[WEATHER])
        call = first.content[-1]
        assert call.type == "tool_use"
        history = [*MESSAGES, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}]}]
        second = await client.messages.create(model="mock", max_tokens=100, messages=history, tools=[WEATHER],
                                              tool_choice={"type": "auto"})
    assert second.content[0].text == REPLY  # type: ignore[union-attr]


async def test_a_cut_after_the_first_token_raises_in_the_sdk() -> None:
    async with sdk(mock_config(fail_after_chunks=1)) as client:
        texts: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as raised:
            async with client.messages.stream(model="mock", max_tokens=100, messages=MESSAGES) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    assert texts == [REPLY[:4]]
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "the mock upstream failed" in raised.value.body["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize(("client", "error"), [
    ({"api_key": "wrong-key-0123456789"}, anthropic.AuthenticationError),
    ({"api_key": KEY}, None),
    ({"api_key": None, "auth_token": KEY}, None),  # Authorization: Bearer
])
async def test_the_key_comes_as_x_api_key_or_bearer(client: dict[str, Any], error: type[Exception] | None) -> None:
    async with sdk(keyed_config(), **client) as sdk_client:
        if error is None:
            message = await sdk_client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
            assert message.content[0].text == REPLY  # type: ignore[union-attr]
            return
        with pytest.raises(error) as raised:
            await sdk_client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
    assert raised.value.body == {"type": "error", "error": {"type": "authentication_error", "message": (  # type: ignore[attr-defined]
        "unauthorized: send a valid key as 'Authorization: Bearer <key>' (the SDK's api_key, sent as x-api-key)")}}


@pytest.mark.parametrize(("extra", "error", "named"), [
    ({"model": "nope"}, anthropic.NotFoundError, "unknown model 'nope'"),
    ({"extra_body": {"top_k": 5}}, anthropic.BadRequestError, "top_k: not supported"),
    ({"extra_body": {"temperature": 1.5}}, anthropic.BadRequestError, "temperature"),  # 2.x SDKs no longer send it
    ({"messages": [{"role": "system", "content": "x"}]}, anthropic.BadRequestError, "messages.0.role"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, anthropic.BadRequestError, "tools.0"),
])
async def test_bad_requests_are_anthropic_errors_that_name_the_field(extra: dict[str, Any], error: type[Exception],
                                                                     named: str) -> None:
    request: dict[str, Any] = {"model": "mock", "max_tokens": 100, "messages": MESSAGES, **extra}
    async with sdk(mock_config()) as client:
        with pytest.raises(error) as raised:
            await client.messages.create(**request)
    body = raised.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and named in body["error"]["message"]
    assert body["error"]["type"] == ("not_found_error" if error is anthropic.NotFoundError else "invalid_request_error")


async def test_over_the_rate_limit_is_a_rate_limit_error_with_retry_after() -> None:
    config = make_config([MOCK], limits={"requests_per_minute": 1, "burst": 1}, **RESUME_OFF)
    async with sdk(config) as client:
        await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
        with pytest.raises(anthropic.RateLimitError) as raised:
            await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
    assert raised.value.response.headers["retry-after"].isdigit()
    assert raised.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


@pytest.mark.parametrize(("status", "error"), [
    (529, anthropic.OverloadedError),  # Anthropic's own overload passes through
    (503, anthropic.InternalServerError),  # any other upstream failure is the proxy's 502
])
async def test_upstream_failures_before_the_first_token_keep_their_class(status: int, error: type[Exception]) -> None:
    async with mock_upstream() as upstream:
        model = model_at(upstream.url, "anthropic", "claude", f"claude+fail=9:{status}")
        async with sdk(upstream_config([model], **RESUME_OFF)) as client:
            with pytest.raises(error) as raised:
                await client.messages.create(model="claude", max_tokens=100, messages=MESSAGES)
    assert raised.value.status_code == (529 if status == 529 else 502)  # type: ignore[attr-defined]
    assert upstream.recorder.count() == 3  # the proxy's retries, then the error


async def test_a_model_of_another_dialect_answers_and_is_named() -> None:
    async with mock_upstream(reply=REPLY) as upstream:
        models = [{"name": "first", "adapter": "mock", "fail_before_first_token": True, "fallbacks": ["gpt"]},
                  model_at(upstream.url, "openai", "gpt", "mock-gpt")]
        async with sdk(upstream_config(models, **RESUME_OFF)) as client:
            async with client.messages.stream(model="first", max_tokens=100, messages=MESSAGES,
                                              system="Be brief.", stop_sequences=["\n\n"],
                                              extra_body={"temperature": 0.25}) as stream:
                start = [event async for event in stream][0]
                final = await stream.get_final_message()
    assert start.type == "message_start" and start.message.model == "gpt"
    assert final.content[0].text == REPLY and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    sent = upstream.recorder.attempts[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."} and sent["stop"] == ["\n\n"]
    assert sent["temperature"] == 0.25
    assert sent["max_tokens"] == 100 or sent.get("max_completion_tokens") == 100


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "openai_responses"])
async def test_a_cut_upstream_of_any_dialect_raises_mid_stream_and_is_a_502_without_stream(dialect: str) -> None:
    async with mock_upstream() as upstream:
        config = upstream_config([model_at(upstream.url, dialect, "gpt", "gpt+drop_after=2")], **RESUME_OFF)
        async with sdk(config) as client:
            texts: list[str] = []
            with pytest.raises(anthropic.APIStatusError) as raised:
                async with client.messages.stream(model="gpt", max_tokens=100, messages=MESSAGES) as stream:
                    async for text in stream.text_stream:
                        texts.append(text)
            with pytest.raises(anthropic.InternalServerError) as whole:  # nothing sent yet: a plain 502
                await client.messages.create(model="gpt", max_tokens=100, messages=MESSAGES)
    assert texts and raised.value.body["error"]["message"].startswith("truncated: ")  # type: ignore[index]
    assert whole.value.status_code == 502 and whole.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_a_client_that_leaves_closes_the_upstream() -> None:
    async with mock_upstream() as upstream:
        config = upstream_config([model_at(upstream.url, "openai", "gpt", "gpt+delay_ms=200")], **RESUME_OFF)
        async with sdk(config) as client:
            async with client.messages.stream(model="gpt", max_tokens=100, messages=MESSAGES) as stream:
                async for _ in stream.text_stream:
                    break
            await upstream.recorder.wait_closed(0, timeout=5)
    assert not upstream.recorder.attempts[0].finished


async def test_a_recovered_answer_reaches_the_sdk_whole() -> None:
    config = mock_config(fail_after_chunks=2, fail_continuations=False, recovery="continue",
                         continue_with="trailing_assistant")
    async with sdk(config) as client:
        async with client.messages.stream(model="mock", max_tokens=100, messages=MESSAGES) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
    assert text == REPLY and final.content[0].text == REPLY and final.stop_reason == "end_turn"  # type: ignore[union-attr]


async def test_a_full_proxy_is_a_service_unavailable_error() -> None:
    config = make_config([{**MOCK, "chunk_delay_ms": 200}], limits={"max_streams": 1}, **RESUME_OFF)
    async with sdk(config) as client:
        async with client.messages.stream(model="mock", max_tokens=100, messages=MESSAGES) as stream:
            async for _ in stream.text_stream:
                break  # one stream open: the proxy is full
            with pytest.raises(anthropic.ServiceUnavailableError) as raised:
                await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
    assert raised.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert raised.value.response.headers["retry-after"].isdigit()


async def test_metrics_and_the_rate_limit_count_the_door_like_chat() -> None:
    config = make_config([MOCK], limits={"requests_per_minute": 1, "burst": 2}, **RESUME_OFF)
    async with serve(create_app(config)) as url:
        async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
            await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
            async with client.messages.stream(model="mock", max_tokens=100, messages=MESSAGES) as stream:
                await stream.get_final_message()
            with pytest.raises(anthropic.RateLimitError):
                await client.messages.create(model="mock", max_tokens=100, messages=MESSAGES)
        async with httpx2.AsyncClient(base_url=url) as plain:
            metrics = (await plain.get("/metrics")).text
    assert 'llm_proxy_streams_total{model="mock",reason="stop"} 2.0' in metrics
    assert 'llm_proxy_rejected_requests_total{reason="rate_limited"} 1.0' in metrics
