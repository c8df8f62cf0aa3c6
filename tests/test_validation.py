"""Request validation, as tables."""

from __future__ import annotations

import json

import pytest

from proxy.deltas import Message
from proxy.errors import BadRequest
from proxy.validation import parse_chat_body, parse_stream_query

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
