"""The client goes away: the upstream connection closes promptly in every phase, and nothing leaks."""

from __future__ import annotations

import logging
import time

import anyio
import httpx2
import pytest

from tests.conftest import RESUME_OFF, chat_body, proxy
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio


async def leave_after(client: httpx2.AsyncClient, *, events: int = 0, seconds: float = 0.0) -> float:
    """Open a stream, read `events` events (or wait `seconds`), then drop the connection."""
    async with client.stream("POST", "/chat", json=chat_body()) as response:
        assert response.status_code == 200
        if events:
            seen = 0
            async for chunk in response.aiter_bytes():
                seen += chunk.count(b"data:")
                if seen >= events:
                    break
        else:
            await anyio.sleep(seconds)
    return time.monotonic()


@pytest.mark.parametrize(
    ("fault", "leave"),
    [
        ("delay_ms=200", {"events": 2}),  # mid-stream
        ("first_delay_ms=10000", {"seconds": 0.3}),  # waiting for the first token
        ("stall_after=2", {"events": 2}),  # a silent upstream
    ],
)
async def test_upstream_closes_soon_after_the_client_leaves(fault: str, leave: dict, caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+{fault}")], **RESUME_OFF)) as client:
        left = await leave_after(client, **leave)
        closed = await up.recorder.wait_closed(0, timeout=2.0)
        await wait_for_log(caplog, '"reason":"cancelled"')
    assert closed - left < 1.0
    assert not up.recorder.attempts[0].finished and up.recorder.count() == 1


async def test_leaving_during_a_retry_backoff_stops_the_retries(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+fail=5:503+retry_after=3")], **RESUME_OFF)
        async with proxy(config) as client:
            await leave_after(client, seconds=0.3)
            await wait_for_log(caplog, '"reason":"cancelled"')
            await anyio.sleep(0.3)
    assert up.recorder.count() == 1


async def wait_for_log(caplog, text: str, timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not any(text in r.getMessage() for r in caplog.records):
            await anyio.sleep(0.01)
