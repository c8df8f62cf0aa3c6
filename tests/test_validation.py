"""Request validation, as tables."""

from __future__ import annotations

import json

import pytest

from llm_sse_proxy.proxy.deltas import OPTIONAL_FIELDS, ChatRequest, Message
from llm_sse_proxy.proxy.errors import BadRequest
from llm_sse_proxy.proxy.doors.validation import check_supported, parse_chat_body, parse_stream_query

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b"null", "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (json.dumps({}).encode(), "messages"),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": "hi"}).encode(), "messages"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), "messages.0.role"),
        (json.dumps({"messages": [{"role": [], "content": ""}]}).encode(), "messages.0.role"),  # hypothesis found it
        (json.dumps({"messages": [{"role": {}, "content": "x"}]}).encode(), "messages.0.role"),
        (json.dumps({"messages": [{"role": "user"}]}).encode(), "messages.0.content"),
        (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), "messages.0.content"),
        (json.dumps({"messages": [{"role": "user", "content": "x", "extra": 1}]}).encode(), "messages.0.extra"),
        (json.dumps({"messages": USER, "temperature": "1"}).encode(), "temperature"),
        (json.dumps({"messages": USER, "temperature": 3}).encode(), "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', "temperature"),
        (json.dumps({"messages": USER, "top_p": -1}).encode(), "top_p"),
        (json.dumps({"messages": USER, "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({"messages": USER, "max_tokens": 1.5}).encode(), "max_tokens"),
        (json.dumps({"messages": USER, "stop": 3}).encode(), "stop"),
        (json.dumps({"messages": USER, "model": ""}).encode(), "model"),
        (json.dumps({"messages": USER, "model": 7}).encode(), "model"),
        (json.dumps({"messages": USER, "unknown": True}).encode(), "unknown"),
        # Lone surrogates: valid JSON, yet no upstream request can encode them (issue 16).
        (b'{"messages": [{"role": "user", "content": "half \\ud800 a pair"}]}', "messages.0.content: a lone"),
        (b'{"messages": [{"role": "system", "content": "\\udfff"}, {"role": "user", "content": "hi"}]}',
         "messages.0.content: a lone"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "stop": "\\ud800"}', "stop: a lone"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["ok", "x\\udbff"]}', "stop.1: a lone"),
        (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
         "messages.0.content.0.text: a lone"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": '
         b'{"name": "f", "parameters": {"\\udc00": {}}}}]}', "tools.0.function.parameters: a lone"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "model": "\\ud800"}', "model"),
    ],
)
def test_bad_bodies_name_the_problem(body: bytes, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_chat_body(body)
    assert field in caught.value.message


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        ({}, lambda r, m: r.temperature is None and m is None),
        ({"model": "mock"}, lambda r, m: m == "mock"),
        ({"temperature": 0.5, "top_p": 1, "max_tokens": 9}, lambda r, m: (r.temperature, r.top_p, r.max_tokens) == (0.5, 1.0, 9)),
        ({"temperature": 1}, lambda r, m: r.temperature == 1.0),
        ({"stop": "END"}, lambda r, m: r.stop == ("END",)),
        ({"stop": ["a", "b"]}, lambda r, m: r.stop == ("a", "b")),
    ],
)
def test_good_bodies(extra: dict, check) -> None:
    parsed = parse_chat_body(json.dumps({"messages": USER, **extra}).encode())
    assert parsed.request.messages == (Message("user", "hi"),)
    assert check(parsed.request, parsed.model)


@pytest.mark.parametrize(
    ("query", "messages", "model"),
    [
        ({}, [Message("user", "default")], None),
        ({"prompt": ""}, [Message("user", "default")], None),
        ({"prompt": "hi"}, [Message("user", "hi")], None),
        ({"prompt": "hi", "system": "be brief"}, [Message("system", "be brief"), Message("user", "hi")], None),
        ({"prompt": "hi", "model": "m"}, [Message("user", "hi")], "m"),
    ],
)
def test_stream_query(query: dict, messages: list, model: str | None) -> None:
    parsed = parse_stream_query(query, "default")
    assert list(parsed.request.messages) == messages and parsed.model == model


JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}}


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        ({"stream": True}, lambda p: p.stream and not p.include_usage),
        ({"stream": True, "stream_options": {"include_usage": True}}, lambda p: p.stream and p.include_usage),
        ({"stream": False}, lambda p: not p.stream),
        ({"max_completion_tokens": 7}, lambda p: p.request.max_tokens == 7),
        ({"presence_penalty": -2, "frequency_penalty": 1.5}, lambda p: (p.request.presence_penalty,
                                                                        p.request.frequency_penalty) == (-2, 1.5)),
        ({"seed": 42}, lambda p: p.request.seed == 42),
        ({"response_format": {"type": "json_object"}}, lambda p: p.request.response_format == {"type": "json_object"}),
        ({"response_format": JSON_SCHEMA}, lambda p: p.request.response_format == JSON_SCHEMA),
        ({"messages": [{"role": "developer", "content": "be brief"}, *USER]}, lambda p: p.request.messages[0].role == "developer"),
    ],
)
def test_openai_request_fields(extra: dict, check) -> None:
    assert check(parse_chat_body(json.dumps({"messages": USER, **extra}).encode()))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True, "other": 1}}, "stream_options.other"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": 5}, "max_completion_tokens"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": "1"}, "frequency_penalty"),
        ({"seed": 1.5}, "seed"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_object", "json_schema": JSON_SCHEMA["json_schema"]}}, "json_schema"),
        ({"response_format": {"type": "json_schema"}}, "json_schema"),
    ],
)
def test_bad_openai_request_fields_name_the_field(extra: dict, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_chat_body(json.dumps({"messages": USER, **extra}).encode())
    assert field in caught.value.message


@pytest.mark.parametrize("name", OPTIONAL_FIELDS)
def test_a_field_the_model_cannot_take_is_a_400_that_names_it(name: str) -> None:
    values = {"presence_penalty": 1.0, "frequency_penalty": 1.0, "seed": 1, "response_format": {"type": "json_object"},
              "parallel_tool_calls": False, "logit_bias": {"1": 5}}
    request = ChatRequest(messages=(Message("user", "hi"),), **{name: values[name]})
    check_supported(request, "m", frozenset(OPTIONAL_FIELDS))
    with pytest.raises(BadRequest) as caught:
        check_supported(request, "m", frozenset(OPTIONAL_FIELDS) - {name})
    assert name in caught.value.message and "'m'" in caught.value.message


PLAIN = [
    {"messages": USER},
    {"messages": USER, "model": "gpt", "stream": True},
    {"messages": USER, "model": None, "stream": None},
    {"messages": USER, "stream": False},
    {"messages": [{"role": r, "content": f"{r} says"} for r in ("system", "developer", "user", "assistant")]},
    {"messages": [{"content": "", "role": "user"}], "model": "m" * 200},
]
NOT_PLAIN = [  # each is read (or refused) by pydantic, as before
    {},
    {"messages": []},
    {"messages": USER, "model": ""},
    {"messages": USER, "model": "m" * 201},
    {"messages": USER, "model": 5},
    {"messages": USER, "stream": 1},
    {"messages": USER, "stream": "true"},
    {"messages": USER, "temperature": 0.5},
    {"messages": USER, "events": ["usage"]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
    {"messages": [{"role": "user", "content": None}]},
    {"messages": [{"role": "user"}]},
    {"messages": [{"role": "user", "content": "hi", "name": "x"}]},
    {"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]},
    {"messages": [{"role": "robot", "content": "hi"}]},
    {"messages": [{"role": ["user"], "content": "hi"}]},
    {"messages": [USER[0], "hi"]},
    {"messages": {"role": "user", "content": "hi"}},
]


@pytest.mark.parametrize("data", PLAIN)
def test_the_plain_body_reads_as_pydantic_reads_it(data: dict) -> None:
    from llm_sse_proxy.proxy.doors.validation import _plain_chat, _validated_chat

    assert _plain_chat(data) == _validated_chat(data)
    assert parse_chat_body(json.dumps(data).encode()) == _validated_chat(data)


@pytest.mark.parametrize("data", NOT_PLAIN)
def test_any_other_body_goes_to_pydantic(data: dict) -> None:
    from llm_sse_proxy.proxy.doors.validation import _plain_chat

    assert _plain_chat(data) is None
