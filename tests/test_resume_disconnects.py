"""With resumable streams on (the default), a client that leaves does not cancel its upstream at once: the
stream goes on for up to `resume.grace`. Issue 26 item 10: the access line said `client_disconnect: false`
and `llm_proxy_client_disconnects_total` did not move. Now both record the disconnect, and the line and
`llm_proxy_resume_grace_total` say what came of the grace: resumed, cancelled at grace, finished unread."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import chat_body, proxy, read_stream
from tests.test_disconnect import wait_for_log
from tests.test_observability import access_lines, samples
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio
HANG = 30


async def leave_after_two_events(client: httpx2.AsyncClient) -> tuple[str, str]:
    """POST /chat, read two events, then close the connection; the stream id and the last event id."""
    raw = b""
    async with client.stream("POST", "/chat", json=chat_body()) as response:
        sid = response.headers["x-stream-id"]
        async for chunk in response.aiter_bytes():
            raw += chunk
            if raw.count(b"\n\n") >= 2:
                break
    last_id = [line for line in raw.decode().splitlines() if line.startswith("id: ")][-1][4:]
    return sid, last_id


def config(up: Any, fault: str, **resume: Any) -> Any:
    return upstream_config([up.model("gpt", f"gpt+{fault}")], resume={"enabled": True, **resume})


async def ended(client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture) -> tuple[dict, dict]:
    await wait_for_log(caplog, '"event":"stream"', timeout=HANG)
    [line] = access_lines(caplog)
    return line, samples((await client.get("/metrics")).text)


def counted(found: dict, grace: str) -> tuple[float | None, float | None]:
    return (found.get(("llm_proxy_client_disconnects_total", (("reason", "closed"),))),
            found.get(("llm_proxy_resume_grace_total", (("outcome", grace),))))


async def test_a_client_that_leaves_and_never_returns_is_recorded_as_finished_unread(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(config(up, "delay_ms=20")) as client:
        with anyio.fail_after(HANG):
            await leave_after_two_events(client)
            line, found = await ended(client, caplog)
    assert (line["reason"], line["client_disconnect"], line["grace"]) == ("stop", True, "finished_unread")
    assert counted(found, "finished_unread") == (1, 1)


async def test_a_client_that_never_returns_within_grace_is_recorded_as_cancelled_at_grace(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(config(up, "delay_ms=300", grace=0.3)) as client:
        with anyio.fail_after(HANG):
            await leave_after_two_events(client)
            line, found = await ended(client, caplog)
    assert (line["reason"], line["client_disconnect"], line["grace"]) == ("cancelled", True, "cancelled_at_grace")
    assert counted(found, "cancelled_at_grace") == (1, 1)


async def test_a_client_that_comes_back_is_recorded_as_resumed(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(config(up, "delay_ms=30")) as client:
        with anyio.fail_after(HANG):
            sid, last_id = await leave_after_two_events(client)
            response, parsed = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": last_id})
            line, found = await ended(client, caplog)
    assert response.status_code == 200 and json.loads(parsed.events[-1].data)["reason"] == "stop"
    assert (line["reason"], line["client_disconnect"], line["grace"]) == ("stop", True, "resumed")
    assert counted(found, "resumed") == (1, 1)


async def test_a_client_that_reads_to_the_end_left_nothing_to_record(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(config(up, "delay_ms=0")) as client:
        with anyio.fail_after(HANG):
            await read_stream(client, "POST", "/chat", json=chat_body())
            line, found = await ended(client, caplog)
    assert (line["reason"], line["client_disconnect"], line["grace"]) == ("stop", False, None)
    assert counted(found, "resumed") == (None, None)
