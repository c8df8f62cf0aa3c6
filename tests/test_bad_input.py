"""Property tests: whatever a client sends, the answer is a well-formed stream or a 4xx JSON error.

Requests go over raw sockets to the real server (uvicorn in a thread), so bodies, query strings and
headers can hold anything HTTP/1.1 framing allows: wrong types, huge values, deep nesting, invalid
UTF-8, NUL bytes, duplicate keys, wrong content types. Never a 5xx; the server stays up.

One exception is allowed and counted: a request that uvicorn's HTTP parser itself refuses (a NUL or a
control character in a header, say) gets uvicorn's plain-text 400 before the proxy sees it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, quote_from_bytes

import pytest
import uvicorn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llm_sse_proxy.proxy.app import create_app
from tests.conftest import make_config
from tests.sse_parse import parse_stream

KEY = "fuzz-client-key-0123456789abcdef"
BEARER = ("authorization", f"Bearer {KEY}")
PARSER_REJECTION = b"Invalid HTTP request received."
MAX_BODY = 65536
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    config = make_config(
        [{"name": "mock", "adapter": "mock", "reply": "fine", "chunk_chars": 2, "chunk_delay_ms": 0},
         {"name": "echo", "adapter": "mock", "echo": True, "chunk_chars": 7, "chunk_delay_ms": 0, "max_tokens_cap": 50}],
        auth={"keys": ["${FUZZ_KEYS}"]}, environ={"FUZZ_KEYS": KEY},
        server={"max_body_bytes": MAX_BODY},
        limits={"max_messages": 50, "max_chars": 20000, "requests_per_minute": 1e9, "burst": 10**9},
    )
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    assert exchange(server.servers[0].sockets[0].getsockname()[1], b"GET", b"/healthz", [])[0] == 200
    server.should_exit = True
    thread.join(10)


def exchange(port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"",
             ) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request on its own connection; (status, headers, decoded body).

    A body goes out only after `100 Continue`: the proxy refuses some requests (401, 413, 415) before
    reading their body and closes, and a body still in flight then would race that close (a reset can
    swallow the answer). `Expect: 100-continue` makes uvicorn ask for the body only when the app reads it.
    """
    head = [method + b" " + target + b" HTTP/1.1", b"host: 127.0.0.1", b"connection: close"]
    head += [name + b": " + value for name, value in headers]
    if body or method == b"POST":
        head.append(b"content-length: %d" % len(body))
    if body:
        head.append(b"expect: 100-continue")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        raw = b""
        if body:
            while b"\r\n\r\n" not in raw and (chunk := sock.recv(65536)):
                raw += chunk
            if raw.startswith(b"HTTP/1.1 100"):
                raw = raw.split(b"\r\n\r\n", 1)[1]
                sock.sendall(body)
        while chunk := sock.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in header_block.split(b"\r\n") if b": " in line)
    if fields.get(b"transfer-encoding") == b"chunked":
        payload = dechunk(payload)
    return int(status_line.split()[1]), fields, payload


def dechunk(payload: bytes) -> bytes:
    out = []
    while payload:
        size_line, _, payload = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            break
        out.append(payload[:size])
        payload = payload[size + 2:]
    return b"".join(out)


def assert_well_formed(status: int, fields: dict[bytes, bytes], payload: bytes) -> None:
    event(f"{status} {'parser' if payload == PARSER_REJECTION else fields.get(b'content-type', b'').decode()[:17]}")
    assert status < 500, (status, payload[:500])
    if status == 200 and not fields[b"content-type"].startswith(b"text/event-stream"):
        # /models, /healthz, /token (JSON), /metrics (Prometheus text)
        if fields[b"content-type"] == b"application/json":
            json.loads(payload)
        else:
            assert fields[b"content-type"].startswith(b"text/plain; version=")
    elif status == 200:
        parsed = parse_stream(payload)
        items = [json.loads(e.data) for e in parsed.events]
        assert [i for i, p in enumerate(items) if p.get("action") == "terminate"] == [len(items) - 1]
        assert parsed.leftover == "" and all(p.get("text") for p in items[:-1])
        assert b"x-request-id" in fields
    elif status == 204:
        assert payload == b""
    elif payload == PARSER_REJECTION:
        assert status == 400
    else:
        assert 400 <= status < 500 and fields[b"content-type"] == b"application/json", (status, payload[:300])
        error = json.loads(payload)["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"]
        assert b"x-request-id" in fields


# Bodies -------------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
mostly = st.sampled_from([True] * 4 + [False])  # mostly well-formed, so the paths past validation get fuzzed too
good_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]),
                                      "content": st.text(max_size=40)})
odd_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "tool", "", "USER"]) | json_values, "content": st.text(max_size=40) | json_values},
    optional={"name": json_values, "extra": json_values})
messages = mostly.flatmap(lambda good: st.lists(good_message, min_size=1, max_size=4) if good else
                          st.lists(good_message | odd_message, max_size=5) | json_values)
chat = st.fixed_dictionaries(
    {"messages": messages},
    optional={"model": st.sampled_from(["mock", "echo", "nope", ""]) | json_values,
              "max_tokens": st.integers() | json_values, "temperature": st.floats() | json_values,
              "top_p": st.floats() | json_values, "stop": json_values, "stream": json_values},
)
huge = st.sampled_from([
    b'{"messages":[{"role":"user","content":"' + b"x" * 70000 + b'"}]}',  # over the body limit
    b'{"messages":[{"role":"user","content":"' + b"x" * 30000 + b'"}]}',  # over max_chars
    b'{"messages":[' + b",".join([b'{"role":"user","content":"a"}'] * 60) + b"]}",  # over max_messages
    b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":' + b"9" * 5000 + b"}",  # past int parsing
    b'{"messages":[{"role":"user","content":"hi"}],"temperature":1e999}',
    b"[" * 50000 + b"]" * 50000,  # deep nesting
    b'{"a":' * 20000 + b"1" + b"}" * 20000,
])
raw_bodies = st.one_of(
    chat.map(lambda c: json.dumps(c).encode()),
    chat.map(lambda c: json.dumps(c, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
    huge,
    st.tuples(chat, json_values).map(  # duplicate keys: which one wins must not matter
        lambda t: b'{"messages":[{"role":"user","content":"hi"}],"messages":' + json.dumps(t[1]).encode() + b"}"),
    st.binary(min_size=1, max_size=20).map(  # invalid UTF-8 and NUL bytes inside a string
        lambda junk: b'{"messages":[{"role":"user","content":"' + junk.replace(b'"', b"") + b'\x00\xff"}]}'),
)
content_types = st.sampled_from([b"application/json"] * 6 + [b"application/json; charset=utf-8", b"text/plain",
                                 b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                                 b"application/problem+json", b"APPLICATION/JSON", b"", b"application/json\x00"])


@SETTINGS
@given(body=raw_bodies, content_type=content_types, with_key=mostly)
def test_any_body(port: int, body: bytes, content_type: bytes, with_key: bool) -> None:
    headers = [(b"content-type", content_type)] if content_type else []
    if with_key:
        headers.append((BEARER[0].encode(), BEARER[1].encode()))
    assert_well_formed(*exchange(port, b"POST", b"/chat", headers, body))


# Query strings ------------------------------------------------------------------------------------------

query_names = st.sampled_from(["prompt"] * 3 + ["model", "system", "token", "x", "prompt[]", ""]) | st.text(max_size=8)
query_values = st.one_of(
    st.text(max_size=60).map(lambda t: quote(t, safe="")),
    st.binary(max_size=40).map(lambda b: quote_from_bytes(b, safe="")),  # invalid UTF-8 after decoding
    st.sampled_from(["%00", "%zz", "%", "%e2%82", "a+b", "mock", "echo", "nope", "x" * 9000, "%FF%FE"]),
    st.lists(st.text(max_size=12), min_size=3, max_size=5).map(lambda p: quote(".".join(p), safe=".")),  # token-ish
)
queries = st.lists(st.tuples(query_names.map(lambda n: quote(n, safe="")), query_values), max_size=6)


@SETTINGS
@given(pairs=queries, with_key=mostly, path=st.sampled_from([b"/stream"] * 4 + [b"/models", b"/healthz"]))
def test_any_query_string(port: int, pairs: list[tuple[str, str]], with_key: bool, path: bytes) -> None:
    target = path + b"?" + "&".join(f"{k}={v}" for k, v in pairs).encode()
    headers = [(BEARER[0].encode(), BEARER[1].encode())] if with_key else []
    assert_well_formed(*exchange(port, b"GET", target, headers))


# Headers ------------------------------------------------------------------------------------------------

header_names = st.sampled_from([b"authorization", b"content-type", b"x-request-id", b"last-event-id", b"origin",
                                b"accept", b"x-forwarded-for", b"accept-encoding", b"cookie", b"x-mock-fail"]) | \
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12).map(str.encode)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(str.encode),
    st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F)),  # obs-text bytes
    st.binary(max_size=20).map(lambda b: bytes(c for c in b if c not in b"\r\n")),  # control bytes, NUL too
    st.sampled_from([b"Bearer " + KEY.encode(), b"Bearer", b"bearer  " + KEY.encode() + b"\x00", b"Basic eA==",
                     b"application/json", b"x" * 8000, b"\xff\xfe", b"1", b"-1", b"*"]),
)
targets = st.sampled_from([(b"POST", b"/chat")] * 3 + [(b"GET", b"/stream?prompt=hi")] * 3 + [(b"POST", b"/token"),
                           (b"GET", b"/models"), (b"GET", b"/metrics"), (b"OPTIONS", b"/chat"),
                           (b"DELETE", b"/chat"), (b"GET", b"/nowhere")])


@SETTINGS
@given(headers=st.lists(st.tuples(header_names, header_values), max_size=8), target=targets, with_key=mostly)
def test_any_headers(port: int, headers: list[tuple[bytes, bytes]], target: tuple[bytes, bytes], with_key: bool,
                     ) -> None:
    method, path = target
    if with_key:
        headers = [(BEARER[0].encode(), BEARER[1].encode()), (b"content-type", b"application/json"), *headers]
    body = b'{"messages":[{"role":"user","content":"hi"}]}' if method == b"POST" else b""
    assert_well_formed(*exchange(port, method, path, headers, body))
