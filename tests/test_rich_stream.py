"""Reasoning, refusals and tool calls through the whole proxy: uvicorn on loopback, the mock adapter
and the OpenAI adapter against the mock upstream, over real HTTP both ways."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RESUME_OFF, assert_one_terminate_last, chat_body, make_config, proxy, read_stream, serve
from tests.test_openai_fixtures import FIXTURES, replaying
from tests.upstream_fixtures import API_KEY, mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

README = Path(__file__).parents[1] / "README.md"
EVERY_EVENT = ["reasoning", "refusal", "tool_call", "tool_call_delta"]
RICH_MOCK = {"name": "rich", "adapter": "mock", "reply": "Hello there", "chunk_chars": 6, "chunk_delay_ms": 0,
             "thinking": "Think first.", "tool_calls": [{"name": "get_weather", "arguments": '{"city":"Paris"}'}]}


def seq_ids(raw: bytes) -> bytes:
    """A resumable stream's ids (`<stream id>:<seq>`, issue 10) as the plain stream's (`<seq>`)."""
    return re.sub(rb"^id: [A-Za-z0-9_-]+:(\d+)$", rb"id: \1", raw, flags=re.MULTILINE)


def typed(parsed: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(event.type, json.loads(event.data)) for event in parsed.events]


@pytest.mark.parametrize("resume", [False, True])
async def test_a_request_that_does_not_ask_gets_exactly_the_old_bytes(resume: bool) -> None:
    async with proxy(make_config([RICH_MOCK], **({} if resume else RESUME_OFF))) as client:
        async with client.stream("POST", "/chat", json=chat_body("hi")) as response:
            raw = await response.aread()
        async with client.stream("GET", "/stream", params={"prompt": "hi"}) as response:
            raw_get = await response.aread()
    expected = (b'id: 1\ndata: {"text":"Hello "}\n\n'
                b'id: 2\ndata: {"text":"there"}\n\n'
                b'id: 3\ndata: {"action":"terminate","reason":"tool_calls","model":"rich",'
                b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n')
    if resume:  # the same events but for the stream id in each event id (and GET's preamble for EventSource)
        assert raw != expected and seq_ids(raw) == expected
        assert seq_ids(raw_get).endswith(expected)
    else:
        assert raw == expected and raw_get == expected


async def test_every_event_in_order_when_asked() -> None:
    async with proxy(make_config([RICH_MOCK])) as client:
        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=EVERY_EVENT))
    call = {"index": 0, "id": "call_mock_0", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert typed(parsed) == [
        ("reasoning", {"text": "Think "}),
        ("reasoning", {"text": "first."}),
        ("message", {"text": "Hello "}),
        ("message", {"text": "there"}),
        ("tool_call_delta", {"index": 0, "id": "call_mock_0", "name": "get_weather", "arguments": ""}),
        ("tool_call_delta", {"index": 0, "arguments": '{"city'}),
        ("tool_call_delta", {"index": 0, "arguments": '":"Par'}),
        ("tool_call_delta", {"index": 0, "arguments": 'is"}'}),
        ("tool_call", call),
        ("message", {"action": "terminate", "reason": "tool_calls", "model": "rich",
                     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, "tool_calls": [call]}),
    ]
    # One sequence for all kinds, in a resumable stream's ids too (so a reconnect resumes named events alike).
    assert [event.id.rsplit(":", 1)[1] for event in parsed.events] == [str(i) for i in range(1, 11)]


async def test_get_asks_with_a_query_parameter() -> None:
    async with proxy(make_config([RICH_MOCK])) as client:
        _, parsed = await read_stream(client, "GET", "/stream", params={"prompt": "hi", "events": "reasoning,tool_call"})
    assert [kind for kind, _ in typed(parsed)] == ["reasoning", "reasoning", "message", "message", "tool_call", "message"]


async def test_a_model_configured_to_drop_reasoning_never_sends_it() -> None:
    async with proxy(make_config([{**RICH_MOCK, "reasoning": "drop"}])) as client:
        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=EVERY_EVENT))
    kinds = [kind for kind, _ in typed(parsed)]
    assert "reasoning" not in kinds and kinds.count("tool_call") == 1
    assert b"Think" not in b"".join(e.data.encode() for e in parsed.events)


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("POST", {"json": chat_body(events=["reasoning", "thoughts"])}, "events: unknown event 'thoughts'"),
        ("POST", {"json": chat_body(events="reasoning")}, "events: Input should be a valid list"),
        ("GET", {"params": {"events": "reasoning,bogus"}}, "events: unknown event 'bogus'"),
        ("POST", {"json": chat_body(n=2)}, "n: one stream carries one answer"),
    ],
)
async def test_bad_event_requests_and_n_above_one_are_clear_400s(method: str, kwargs: dict, message: str) -> None:
    async with proxy(make_config([RICH_MOCK])) as client:
        response = await client.request(method, "/chat" if method == "POST" else "/stream", **kwargs)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert message in response.json()["error"]["message"]


async def test_openai_upstream_reasoning_and_tool_calls() -> None:
    async with mock_upstream(reply="It is sunny.") as up:
        model = up.model("gpt", "gpt+reasoning=3+tool_calls=2+chunk_chars=4")
        async with proxy(upstream_config([model])) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=["reasoning", "tool_call"]))
    items = typed(parsed)
    terminate = assert_one_terminate_last([payload for _, payload in items])
    assert "".join(p["text"] for kind, p in items if kind == "reasoning") == "The user sai"
    assert "".join(p["text"] for kind, p in items[:-1] if kind == "message") == "It is sunny."
    calls = [p for kind, p in items if kind == "tool_call"]
    assert calls == [
        {"index": 0, "id": "call_mock0", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
        {"index": 1, "id": "call_mock1", "name": "get_weather", "arguments": '{"city": "Tokyo", "unit": "celsius"}'},
    ]
    assert terminate["reason"] == "tool_calls" and terminate["tool_calls"] == calls
    assert terminate["usage"]["reasoning_tokens"] == 0  # the mock reports it; a request that asked sees it


async def test_openrouter_style_reasoning_and_tool_call_pieces() -> None:
    async with mock_upstream(reply="ok") as up:
        model = up.model("gpt", "gpt+reasoning=2+reasoning_field=reasoning+tool_calls=1+chunk_chars=20")
        async with proxy(upstream_config([model])) as client:
            _, parsed = await read_stream(client, "POST", "/chat",
                                          json=chat_body("hi", events=["reasoning", "tool_call_delta"]))
    items = typed(parsed)
    assert up.recorder.attempts[0].fault is None
    assert [kind for kind, _ in items] == ["reasoning", "reasoning", "message", *["tool_call_delta"] * 3, "message"]
    assert [p for kind, p in items if kind == "tool_call_delta"] == [
        {"index": 0, "id": "call_mock0", "name": "get_weather", "arguments": ""},
        {"index": 0, "arguments": '{"city": "Paris", "u'},
        {"index": 0, "arguments": 'nit": "celsius"}'},
    ]
    assert items[-1][1]["tool_calls"][0]["arguments"] == '{"city": "Paris", "unit": "celsius"}'


async def test_tool_call_arguments_that_are_not_json_end_the_stream_with_an_error() -> None:
    async with mock_upstream(reply="ok") as up:
        model = up.model("gpt", "gpt+tool_calls=1+bad_tool_args=1")
        async with proxy(upstream_config([model])) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=["tool_call"]))
    items = typed(parsed)
    assert [kind for kind, _ in items] == ["message", "message"]  # the text, then the terminate
    assert items[-1][1]["reason"] == "error"
    assert items[-1][1]["error"] == {
        "type": "invalid_tool_call",
        "message": "the model's call of 'get_weather' has arguments that are not valid JSON, so it cannot be run"}
    assert len(up.recorder.attempts) == 1  # committed after the text: never retried


async def test_a_refusal_is_carried_and_named_in_the_terminate() -> None:
    async with mock_upstream() as up:
        async with proxy(upstream_config([up.model("gpt", "gpt+refusal=1")])) as client:
            _, asked = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=["refusal"]))
            _, plain = await read_stream(client, "POST", "/chat", json=chat_body("hi"))
    items = typed(asked)
    assert "".join(p["text"] for kind, p in items if kind == "refusal") == "I'm sorry, but I can't help with that request."
    assert items[-1][1]["reason"] == "refusal"
    assert [(e.type, json.loads(e.data)["reason"]) for e in plain.events] == [("message", "stop")]


async def test_reasoning_longer_than_first_token_is_activity_not_a_dead_upstream() -> None:
    # Issue 11: 8 reasoning deltas 150 ms apart (1.2 s) before any text, first_token 0.5 s. Whether the
    # client asked for reasoning or not, the model is alive: one attempt, the whole answer.
    async with mock_upstream(reply="Done thinking.") as up:
        model = up.model("gpt", "gpt+reasoning=8+delay_ms=150+chunk_chars=50")
        config = upstream_config([model], timeouts={"connect": 2, "first_token": 0.5, "idle": 5, "total": 30})
        async with proxy(config) as client:
            for events in ([], ["reasoning"]):
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=events))
                items = typed(parsed)
                assert items[-1][1]["reason"] == "stop", items[-1]
                assert "".join(p["text"] for kind, p in items[:-1] if kind == "message") == "Done thinking."
                assert sum(kind == "reasoning" for kind, _ in items) == (8 if events else 0)
    assert len(up.recorder.attempts) == 2  # one per stream: no retry


@pytest.mark.parametrize(("events", "answered_by"), [([], "backup"), (["reasoning"], None)])
async def test_the_commit_point_is_the_first_event_sent(events: list[str], answered_by: str | None) -> None:
    # The first model reasons, then its connection drops before any text. Reasoning that was not asked
    # for never reached the client, so the fallback answers; reasoning that was sent commits the stream.
    async with mock_upstream(reply="From the backup.") as up:
        flaky = {**up.model("flaky", "gpt+reasoning=2+drop_after=0"), "fallbacks": ["backup"]}
        backup = up.model("backup", "gpt")
        config = upstream_config([flaky, backup], retry={"attempts": 1})
        async with proxy(config) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=events))
    items = typed(parsed)
    terminate = items[-1][1]
    if answered_by:
        assert terminate["reason"] == "stop" and terminate["model"] == "backup"
        assert [kind for kind, _ in items] == ["message"] * len(items)
        assert "".join(p["text"] for _, p in items[:-1]) == "From the backup."
    else:
        assert terminate["reason"] == "error" and terminate["error"]["type"] == "truncated"
        assert [kind for kind, _ in items] == ["reasoning", "reasoning", "message"]
        assert len(up.recorder.attempts) == 1


async def test_tools_tool_calls_tool_answers_and_content_parts_pass_through() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    body = {"messages": messages, "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    async with mock_upstream() as up:
        async with proxy(upstream_config([up.model("gpt", "gpt")])) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json=body)
    assert typed(parsed)[-1][1]["reason"] == "stop"
    sent = up.recorder.attempts[0].body
    assert sent["messages"] == messages
    assert sent["tools"] == tools and sent["tool_choice"] == body["tool_choice"]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"role": "tool", "content": "x"}, "messages.0.tool_call_id: a tool message needs one"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "messages.0.tool_call_id"),
        ({"role": "user", "content": "x", "tool_calls": [{"id": "c", "type": "function",
                                                           "function": {"name": "f", "arguments": "{}"}}]},
         "messages.0.tool_calls: only an assistant message"),
        ({"role": "assistant", "content": None}, "messages.0.content: Field required"),
        ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
         "messages.0.content: image parts are allowed in user messages only"),
        ({"role": "user", "content": [{"type": "audio", "data": "x"}]}, "messages.0.content"),
    ],
)
async def test_messages_a_model_cannot_take_are_clear_400s(message: dict, problem: str) -> None:
    async with proxy(make_config([RICH_MOCK])) as client:
        response = await client.post("/chat", json={"messages": [message]})
    assert response.status_code == 400 and problem in response.json()["error"]["message"], response.json()


README_EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w-]+) -->\n```\n(?P<bytes>.*?)```", re.DOTALL)


async def test_the_readme_examples_are_the_bytes_the_proxy_sends() -> None:
    examples = {m["name"]: m["bytes"].encode() for m in README_EXAMPLE.finditer(README.read_text(encoding="utf-8"))}
    tools = {"name": "mock-tools", "adapter": "mock", "chunk_chars": 100, "chunk_delay_ms": 0,
             "thinking": "The user wants the weather. ", "reply": "Let me check.",
             "tool_calls": [{"name": "get_weather", "arguments": '{"city":"Paris"}'}]}
    refuser = {"name": "refuser", "adapter": "mock", "chunk_chars": 100, "chunk_delay_ms": 0,
               "refusal": "I can't help with that."}
    async with proxy(make_config([tools, refuser], **RESUME_OFF)) as client:
        asked = chat_body("Weather in Paris?", events=["reasoning", "tool_call", "tool_call_delta"])
        async with client.stream("POST", "/chat", json=asked) as response:
            rich = await response.aread()
        async with client.stream("POST", "/chat", json=chat_body("x", model="refuser", events=["refusal"])) as response:
            refused = await response.aread()
    async with serve(replaying((FIXTURES / "deepseek-reasoning-tool-call.sse").read_bytes())) as url:
        model = {"name": "deepseek", "adapter": "openai", "base_url": f"{url}/v1", "api_key": API_KEY, "model": "m"}
        async with proxy(upstream_config([model], **RESUME_OFF)) as client:
            async with client.stream("POST", "/chat", json=chat_body("hi", events=["tool_call"])) as response:
                details = await response.aread()
    assert examples == {"rich-events": rich, "refusal": refused, "usage-details": details}


async def test_a_resumed_stream_replays_named_events_in_their_place() -> None:
    # Issue 10's resumable streams: a reconnect from the middle gets the rest, named events included, once.
    async with proxy(make_config([RICH_MOCK])) as client:
        response, whole = await read_stream(client, "POST", "/chat", json=chat_body("hi", events=EVERY_EVENT))
        sid = response.headers["x-stream-id"]
        _, rest = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": whole.events[0].id})
    assert [(e.id, e.type, e.data) for e in rest.events] == [(e.id, e.type, e.data) for e in whole.events[1:]]
    assert whole.events[0].type == "reasoning" and {e.type for e in rest.events} >= {"reasoning", "tool_call"}
