"""Retries, fallbacks and timeouts: what the client received, and what the upstream saw.

Each test runs against every HTTP adapter (`dialect`): the mock upstream speaks them all.
"""

from __future__ import annotations

import asyncio

import logging

import pytest

from tests.test_upstream_openai import ask
from tests.upstream_fixtures import API_KEY, DIALECTS, mock_upstream, model_at, upstream_config
from tests.conftest import proxy

pytestmark = pytest.mark.anyio

REPLY_CHUNKS = ["Hello", "! Thi", "s is "]


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_retryable_status_is_retried_then_streams_cleanly(status: int, dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+fail=2:{status}", dialect)])) as client:
        text, terminate = await ask(client)
    assert terminate["reason"] == "stop" and text.startswith("Hello!")
    assert up.recorder.count() == 3
    assert [a.status for a in up.recorder.attempts] == [status, status, 200]


FINAL = [(d, f"fail=5:{s}", s) for d in DIALECTS for s in (400, 401, 403, 404, 422)]


@pytest.mark.parametrize(
    ("dialect", "fault", "status"), [*FINAL, ("openai", "fail=5:429+error_type=insufficient_quota", 429)]
)
async def test_final_errors_are_not_retried(dialect: str, fault: str, status: int) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+{fault}", dialect)])) as client:
        text, terminate = await ask(client)
    assert text == "" and up.recorder.count() == 1
    assert terminate["reason"] == "error"
    assert terminate["error"]["type"] == "upstream_rejected"
    assert f"answered {status}" in terminate["error"]["message"]
    assert API_KEY not in str(terminate)


@pytest.mark.parametrize(("fault", "wait"), [("retry_after=1", 1.0), ("retry_after_ms=400", 0.4)])
async def test_retry_after_is_honoured(fault: str, wait: float, dialect: str) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", f"gpt+fail=1:429+{fault}", dialect)])
        async with proxy(config) as client:
            _, terminate = await ask(client)
    first, second = up.recorder.attempts
    assert terminate["reason"] == "stop"
    assert second.started - first.started >= wait * 0.95


async def test_retry_after_beyond_the_cap_is_not_waited_for(dialect: str) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+fail=1:429+retry_after=120", dialect)])
        async with proxy(config) as client:
            _, terminate = await ask(client)
    assert up.recorder.count() == 1 and terminate["reason"] == "error"


async def test_fallback_is_taken_when_retries_are_spent(dialect: str) -> None:
    async with mock_upstream() as up:
        primary = up.model("primary", "p+fail=9:503", dialect, fallbacks=["backup"])
        config = upstream_config([primary, up.model("backup", "b")])
        async with proxy(config) as client:
            text, terminate = await ask(client)
    assert terminate["reason"] == "stop" and terminate["model"] == "backup" and text
    assert up.recorder.count("p+fail=9:503") == 3 and up.recorder.count("b") == 1


async def test_fallbacks_follow_a_final_error_too(dialect: str) -> None:
    async with mock_upstream() as up:
        primary = up.model("primary", "p+fail=9:401", dialect, fallbacks=["backup"])
        async with proxy(upstream_config([primary, up.model("backup", "b")])) as client:
            _, terminate = await ask(client)
    assert terminate["model"] == "backup" and up.recorder.count("p+fail=9:401") == 1


@pytest.mark.parametrize(("primary", "backup"), [("anthropic", "openai"), ("gemini", "anthropic"), ("ollama", "gemini")])
async def test_a_fallback_may_speak_another_dialect(primary: str, backup: str) -> None:
    async with mock_upstream() as up:
        first = up.model("primary", "p+fail=9:529", primary, fallbacks=["backup"])
        async with proxy(upstream_config([first, up.model("backup", "b", backup)])) as client:
            text, terminate = await ask(client)
    assert terminate["reason"] == "stop" and terminate["model"] == "backup" and text.startswith("Hello!")
    assert up.recorder.count("p+fail=9:529") == 3 and up.recorder.count("b") == 1


async def test_error_terminate_when_every_model_failed(dialect: str) -> None:
    async with mock_upstream() as up:
        primary = up.model("primary", "p+fail=9:503", dialect, fallbacks=["backup"])
        async with proxy(upstream_config([primary, up.model("backup", "b+fail=9:500", dialect)])) as client:
            text, terminate = await ask(client)
    assert text == "" and terminate["reason"] == "error"
    assert terminate["error"]["type"] == "upstream_unavailable"
    assert up.recorder.count() == 6


@pytest.mark.parametrize("reply", [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nx: " + b"y" * 20_000 + b"\r\n\r\n"])
async def test_an_upstream_that_breaks_http_is_retried_then_the_fallback_answers(reply: bytes, dialect: str) -> None:
    attempts = []

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(await reader.read(65536))
        writer.write(reply)  # not a status line; or a header line longer than clients accept
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, mock_upstream() as up:
        primary = model_at(f"http://127.0.0.1:{port}", dialect, "primary", fallbacks=["backup"])
        async with proxy(upstream_config([primary, up.model("backup", "b")])) as client:
            text, terminate = await ask(client)
    assert len(attempts) == 3  # retried: a broken reply is not a final answer
    assert terminate["reason"] == "stop" and terminate["model"] == "backup" and text


async def test_a_tls_handshake_that_fails_is_an_unavailable_upstream(dialect: str) -> None:
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # a TLS ClientHello, answered in plain HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    model = model_at(f"https://127.0.0.1:{port}", dialect)
    async with server, proxy(upstream_config([model])) as client:
        text, terminate = await ask(client)
    assert text == "" and terminate["error"]["type"] == "upstream_unavailable"


async def test_unreachable_upstream_is_an_error_terminate(dialect: str) -> None:
    model = model_at("http://127.0.0.1:9", dialect)
    async with proxy(upstream_config([model])) as client:
        text, terminate = await ask(client)
    assert text == "" and terminate["reason"] == "error"
    assert terminate["error"]["type"] == "upstream_unavailable"


@pytest.mark.parametrize(("fault", "error_type"), [
    ("drop_after=3", "truncated"),
    ("close_after=3", "truncated"),
    ("malformed_after=3", "malformed_upstream_data"),
    ("error_after=3", "upstream_unavailable"),
])
async def test_mid_stream_failure_keeps_the_text_and_is_never_retried(fault: str, error_type: str, dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+{fault}", dialect)],
                                                            faults={"on_malformed_chunk": "error"})) as client:
        text, terminate = await ask(client)
    assert text == "".join(REPLY_CHUNKS)
    assert terminate["reason"] == "error" and terminate["error"]["type"] == error_type
    assert up.recorder.count() == 1


async def test_a_drop_before_the_first_token_is_retried(dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+drop_after=0", dialect)])) as client:
        text, terminate = await ask(client)
    assert text == "" and terminate["error"]["type"] == "truncated"
    assert up.recorder.count() == 3


async def test_a_stalled_upstream_ends_within_the_idle_timeout(dialect: str) -> None:
    timeouts = {"connect": 2, "first_token": 5, "idle": 0.4, "total": 30}
    async with mock_upstream() as up:
        async with proxy(upstream_config([up.model("gpt", "gpt+stall_after=3", dialect)], timeouts=timeouts)) as client:
            text, terminate = await ask(client)
        await up.recorder.wait_closed(0, timeout=2)
    assert text == "".join(REPLY_CHUNKS)
    assert terminate["reason"] == "error" and terminate["error"]["type"] == "timeout"
    assert up.recorder.count() == 1


async def test_no_first_token_in_time_goes_to_the_next_model_without_a_retry(dialect: str) -> None:
    timeouts = {"connect": 2, "first_token": 0.3, "idle": 5, "total": 30}
    async with mock_upstream() as up:
        silent = up.model("gpt", "gpt+first_delay_ms=3000", dialect, fallbacks=["backup"])
        async with proxy(upstream_config([silent, up.model("backup", "b", dialect)], timeouts=timeouts)) as client:
            text, terminate = await ask(client)
        await up.recorder.wait_closed(0, timeout=2)
    assert terminate["reason"] == "stop" and terminate["model"] == "backup" and text.startswith("Hello!")
    assert up.recorder.count("gpt+first_delay_ms=3000") == 1 and up.recorder.count("b") == 1


async def test_no_first_token_in_time_is_retried_when_configured_then_fails(dialect: str) -> None:
    timeouts = {"connect": 2, "first_token": 0.3, "idle": 5, "total": 30}
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+first_delay_ms=3000", dialect)], timeouts=timeouts,
                                 retry={"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.01},
                                 faults={"first_token_timeout": "retry"})
        async with proxy(config) as client:
            text, terminate = await ask(client)
        for index in range(2):
            await up.recorder.wait_closed(index, timeout=2)
    assert text == "" and terminate["error"]["type"] == "timeout"
    assert up.recorder.count() == 2


async def test_total_timeout_bounds_the_whole_stream(dialect: str) -> None:
    timeouts = {"connect": 2, "first_token": 5, "idle": 5, "total": 0.5}
    async with mock_upstream() as up:
        async with proxy(upstream_config([up.model("gpt", "gpt+delay_ms=150", dialect)], timeouts=timeouts)) as client:
            text, terminate = await ask(client)
    assert 0 < len(text) < 40
    assert terminate["error"]["type"] == "timeout" and "total" in terminate["error"]["message"]


async def test_outcome_counts_only_the_retries_that_happened(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt+fail=9:503")])) as client:
        await ask(client)
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying in")]
    assert up.recorder.count() == 3 and len(retries) == 2


async def test_backoff_grows_from_the_first_retry_on() -> None:
    """The first attempt runs outside tenacity (issue 13); the retries after it wait as before: attempt n
    waits backoff_initial * 2**(n-1), plus up to backoff_initial of jitter."""
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)

    retry = {"attempts": 3, "backoff_initial": 0.1, "backoff_max": 10, "retry_after_max": 5}
    async with mock_upstream() as up:
        async with proxy(upstream_config([up.model("gpt", "gpt+fail=2:503")], retry=retry), sleep=recorded) as client:
            _, terminate = await ask(client)
    assert terminate["reason"] == "stop" and up.recorder.count() == 3
    assert len(waits) == 2 and 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.3, waits
