"""The Anthropic, Gemini and Ollama adapters against the mock upstream's dialects over loopback: what
they send, and every kind of delta they yield; then the whole path through the proxy, for text."""

from __future__ import annotations

import json

import pytest

from llm_sse_proxy.proxy.deltas import ChatRequest, ImagePart, Message, TextPart, Tool, ToolCall, Usage
from llm_sse_proxy.proxy.errors import UpstreamMalformed
from tests.adapter_harness import Replay, adapter_for, gather, replaying
from tests.conftest import proxy
from tests.test_sse import AWKWARD
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import API_KEY, mock_upstream, model_at, upstream_config

pytestmark = pytest.mark.anyio

NATIVE = ("anthropic", "gemini", "ollama")
REPLY = "Hello! This is the mock upstream, streaming a short canned reply one small chunk at a time."
REASONING = "The user wants the canned reply. I will stream it in small pieces."
WEATHER = Tool("get_weather", "The weather in a city", {"type": "object", "properties": {"location": {"type": "string"}}})
THINKING = {"anthropic": {"thinking_budget": 2048}, "gemini": {"include_thoughts": True}, "ollama": {"think": True}}


def chat(*messages: Message, **extra) -> ChatRequest:
    return ChatRequest(list(messages) or [Message("user", "hi")], **extra)


@pytest.mark.parametrize("dialect", NATIVE)
async def test_text_reasoning_and_a_tool_call_from_the_mock(dialect: str) -> None:
    async with mock_upstream() as up, adapter_for(up.model("m", "model-x", dialect, **THINKING[dialect])) as adapter:
        got = await gather(adapter, chat(tools=(WEATHER,)))
    assert got.text == REPLY and got.reasoning == REASONING
    assert [(c["index"], c["name"]) for c in got.tool_calls] == [(0, "get_weather")]
    assert json.loads(got.tool_calls[0]["arguments"]) == {"location": "Paris", "unit": "celsius"}
    assert got.tool_calls[0]["id"] and got.reason == "tool_calls"
    assert got.usage is not None and got.usage.completion_tokens >= 19
    assert "Signature" not in repr(got.deltas) and "mockSig" not in repr(got.deltas)


@pytest.mark.parametrize("dialect", NATIVE)
async def test_plain_text_stops_and_max_tokens_is_length(dialect: str) -> None:
    async with mock_upstream() as up, adapter_for(up.model("m", "model-x", dialect)) as adapter:
        whole = await gather(adapter)
        cut = await gather(adapter, chat(max_tokens=2))
    assert (whole.text, whole.reasoning, whole.tool_calls, whole.reason) == (REPLY, "", [], "stop")
    assert (cut.text, cut.reason) == ("Hello! Thi", "length")


async def test_anthropic_usage_counts_the_cache_in_the_prompt() -> None:
    async with mock_upstream() as up, adapter_for(up.model("m", "claude", "anthropic")) as adapter:
        got = await gather(adapter, chat(Message("user", "x" * 400)))
    # The mock reads half the prompt from the cache; the rest is input_tokens. The proxy's prompt is both.
    usage = got.usage
    assert usage is not None and usage.prompt_tokens > 100 and usage.completion_tokens == 19
    assert usage.cached_tokens == usage.prompt_tokens // 2


async def test_gemini_usage_counts_thoughts_in_the_completion() -> None:
    async with mock_upstream() as up, adapter_for(up.model("m", "gem", "gemini", include_thoughts=True)) as adapter:
        got = await gather(adapter)
    assert got.usage == Usage(prompt_tokens=1, completion_tokens=19 + 7, reasoning_tokens=7)


CONVERSATION = chat(
    Message("system", "Be brief."),
    Message("developer", "Use tools."),
    Message("user", (TextPart("What is in "), ImagePart("data:image/png;base64,iVBORw0KGgo="), TextPart("and the weather?"))),
    Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"location": "Paris"}'),)),
    Message("tool", '{"temp": 21}', tool_call_id="call_1"),
    temperature=0.5, max_tokens=100, stop=["END"], tools=(WEATHER,), tool_choice="required",
)


async def test_what_anthropic_is_sent() -> None:
    body, headers = await sent("anthropic", thinking_budget=None)
    assert headers["x-api-key"] == API_KEY and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert body["system"] == "Be brief.\n\nUse tools." and body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}}]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp": 21}'}]
    assert (body["max_tokens"], body["temperature"], body["stop_sequences"]) == (100, 0.5, ["END"])
    assert body["tools"][0]["input_schema"] == dict(WEATHER.parameters) and body["tool_choice"] == {"type": "any"}


async def test_anthropic_thinking_adds_its_budget_and_drops_temperature() -> None:
    body, _ = await sent("anthropic", thinking_budget=2048)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2048 + 100 and "temperature" not in body


async def test_what_gemini_is_sent_and_the_key_is_never_in_the_url() -> None:
    body, headers, url = await sent("gemini", with_url=True, include_thoughts=True)
    assert url.endswith("/v1beta/models/m:streamGenerateContent?alt=sse") and API_KEY not in url
    assert headers["x-goog-api-key"] == API_KEY
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nUse tools."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]
    assert body["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["END"],
                                        "thinkingConfig": {"includeThoughts": True}}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_what_ollama_is_sent() -> None:
    body, headers = await sent("ollama", think="high")
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user", "assistant", "tool"]
    assert body["messages"][2] == {"role": "user", "content": "What is in and the weather?", "images": ["iVBORw0KGgo="]}
    assert body["messages"][3]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}]
    assert body["messages"][4] == {"role": "tool", "content": '{"temp": 21}', "tool_name": "get_weather"}
    assert body["think"] == "high" and body["stream"] is True
    assert body["options"] == {"temperature": 0.5, "num_predict": 100, "stop": ["END"]}
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": WEATHER.description,
                                                               "parameters": dict(WEATHER.parameters)}}]


async def sent(dialect: str, with_url: bool = False, **options):
    replay = Replay(b"")  # an empty answer: the adapter fails after sending, which is all this needs
    async with replaying(replay) as url, adapter_for(model_at(url, dialect, **options)) as adapter:
        with pytest.raises(Exception):
            await gather(adapter, CONVERSATION)
    request = replay.requests[0]
    body = json.loads(request["body"])
    return (body, request["headers"], request["url"]) if with_url else (body, request["headers"])


@pytest.mark.parametrize("dialect", NATIVE)
async def test_text_streams_through_the_proxy(dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("m", "model-x", dialect)])) as client:
        text, terminate = await ask(client, "hello", max_tokens=50)
    assert text == REPLY and terminate["reason"] == "stop" and terminate["model"] == "m"
    assert terminate["usage"]["completion_tokens"] == 19


@pytest.mark.parametrize("dialect", NATIVE)
@pytest.mark.parametrize("text", AWKWARD)
async def test_awkward_text_survives_both_hops(text: str, dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("m", "model-x", dialect)])) as client:
        # One mock chunk is one token, and Anthropic needs a max_tokens: room for the longest text.
        got, terminate = await ask(client, "echo:" + text, max_tokens=100_000)
    assert got == text and terminate["reason"] == "stop"


@pytest.mark.parametrize(("dialect", "option", "body"), [
    ("ollama", "max_line_bytes", b'{"message":{"content":"' + b"x" * 300_000),  # a line that never ends
    ("anthropic", "max_event_bytes", b"event: content_block_delta\ndata: " + b"x" * 300_000),
    ("gemini", "max_event_bytes", b"data: " + b"x" * 300_000),
])
async def test_an_endless_line_is_bounded(dialect: str, option: str, body: bytes) -> None:
    replay = Replay(body, "application/x-ndjson" if dialect == "ollama" else "text/event-stream", piece=65536)
    async with replaying(replay) as url, adapter_for(model_at(url, dialect, **{option: 4096})) as adapter:
        with pytest.raises(UpstreamMalformed, match="longer than 4096"):
            await gather(adapter)
