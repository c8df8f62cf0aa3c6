"""Issue 26, item 13: "cannot connect to the upstream" names the upstream's host and port, in the error the
client gets and in the log, and never the key (config refuses user:password@ in a base_url)."""

from __future__ import annotations

import logging
import socket

import pytest

from tests.conftest import RESUME_OFF, chat_body, payloads, proxy, read_stream
from tests.upstream_fixtures import API_KEY, DIALECTS, model_at, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_refused_connection_names_host_and_port_without_credentials(
        dialect: str, caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    model = model_at(f"http://127.0.0.1:{port}", dialect, "m")
    with caplog.at_level(logging.WARNING, logger="llm_sse_proxy.upstream"):
        async with proxy(upstream_config([model], **RESUME_OFF)) as client:
            _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
            door = await client.post("/v1/chat/completions", json=chat_body(model="m"))
    error = payloads(parsed)[-1]["error"]
    assert error["type"] == "upstream_unavailable"
    assert error["message"] == f"cannot connect to the upstream at 127.0.0.1:{port}"
    assert door.status_code == 502 and door.json()["error"]["message"] == error["message"]
    logged = [r.getMessage() for r in caplog.records if r.name == "llm_sse_proxy.upstream"]
    assert logged and all(f"http://127.0.0.1:{port}/" in line for line in logged), logged
    assert API_KEY not in caplog.text and API_KEY not in door.text
