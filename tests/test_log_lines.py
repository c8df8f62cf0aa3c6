"""Log lines through the real CLI (issue 14): every line about a stream carries its request id, and with
`logging.format: json` every line on stderr is one JSON object."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest

from tests.test_server_limits import proxy_process

CANARY_KEY = "sk-canary-0123456789abcdefghijklmnop"
MODELS = [
    {"name": "flaky", "adapter": "mock", "fail_before_first_token": True, "chunk_delay_ms": 0, "fallbacks": ["steady"]},
    {"name": "steady", "adapter": "mock", "chunk_delay_ms": 0},
]
RETRY = {"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02}


def stream_once(port: int, request_id: str) -> str:
    response = httpx2.post(f"http://127.0.0.1:{port}/chat", json={"model": "flaky", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"x-request-id": request_id,
                                                     "authorization": f"Bearer {CANARY_KEY}"}, timeout=10)
    assert response.status_code == 200 and '"model":"steady"' in response.text.replace(" ", "")
    return response.text


@pytest.mark.parametrize("style", ["text", "json"])
def test_relay_lines_carry_the_request_id(tmp_path: Path, style: str) -> None:
    with proxy_process(tmp_path, log_level="info", models=MODELS, default_model="steady", retry=RETRY,
                       logging={"format": style}) as running:
        stream_once(running.port, "rid-one")
        stream_once(running.port, "rid-two")
    about_streams = [line for line in running.stderr if "retrying in" in line or "model flaky failed" in line]
    assert len(about_streams) == 4, running.stderr  # one retry and one fallback for each request
    for line, rid in zip(about_streams, ["rid-one", "rid-one", "rid-two", "rid-two"]):
        if style == "json":
            assert json.loads(line)["request_id"] == rid
        else:
            assert line.endswith(f" request_id={rid}")
    assert not [line for line in running.stderr if CANARY_KEY[3:15] in line]


def test_json_format_makes_every_line_json(tmp_path: Path) -> None:
    with proxy_process(tmp_path, log_level="info", models=MODELS, default_model="steady", retry=RETRY,
                       logging={"format": "json"}) as running:
        stream_once(running.port, "rid-json")
        httpx2.get(f"http://127.0.0.1:{running.port}/healthz", headers={f"x-h{i}": "v" for i in range(120)}, timeout=5)
    lines = [line for line in running.stderr if line.strip()]
    parsed = [json.loads(line) for line in lines]  # raises on the first line that is not JSON
    loggers = {line.get("logger") for line in parsed}
    events = {line.get("event") for line in parsed}
    assert {"llm_sse_proxy.relay", "llm_sse_proxy.connections", "uvicorn.error", "llm_sse_proxy"} <= loggers, loggers
    assert "stream" in events  # the access line, JSON as always
    assert any("listening on" in line.get("message", "") for line in parsed)


def test_text_format_writes_uvicorns_lines_in_the_proxys_format(tmp_path: Path) -> None:
    """Issue 26: text mode wrote uvicorn's `INFO:     …` (coloured on a terminal) beside the proxy's own lines."""
    with proxy_process(tmp_path, log_level="info", models=MODELS, default_model="steady", retry=RETRY,
                       logging={"format": "text"}) as running:
        stream_once(running.port, "rid-text")
    logged = [line for line in running.stderr if not line.startswith(("llm-sse-proxy: ", '{"event":'))]
    uvicorns = [line for line in logged if " uvicorn.error: " in line]
    assert any("Started server process" in line for line in uvicorns), running.stderr
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
    assert [line for line in logged if not stamp.match(line)] == [], running.stderr
