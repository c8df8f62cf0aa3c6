"""The start-up summary: config, models and adapters (never keys), --mock, the demo URL, and warnings for a
proxy others can reach with auth off or CORS open."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_sse_proxy.proxy.server.summary import is_loopback, startup_summary
from tests.conftest import make_config
from tests.redis_fixtures import free_port
from tests.test_server_limits import proxy_process

KEYED = {"keys": ["${PROXY_KEYS}"]}
ENV = {"PROXY_KEYS": "k" * 20, "OPENAI_API_KEY": "sk-secret-in-the-environment"}
MODELS = [{"name": "gpt", "adapter": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "x",
           "api_key": "${OPENAI_API_KEY}"}, {"name": "mock", "adapter": "mock"}]
NO_AUTH = "WARNING: listening on"
OPEN_CORS = 'WARNING: CORS is "*"'


@pytest.mark.parametrize(("host", "top", "warned"), [
    ("127.0.0.1", {}, []),
    ("::1", {}, []),
    ("localhost", {}, []),
    ("0.0.0.0", {}, [NO_AUTH, OPEN_CORS]),
    ("192.168.1.5", {"auth": KEYED}, [OPEN_CORS]),
    ("proxy.example", {"server": {"cors_origins": ["https://site.example"]}}, [NO_AUTH]),
    ("0.0.0.0", {"auth": KEYED, "server": {"cors_origins": ["https://site.example"]}}, []),
])
def test_warnings_for_a_proxy_others_can_reach(host: str, top: dict, warned: list[str]) -> None:
    lines = startup_summary(make_config(MODELS, environ=ENV, **top), config_file="c.yaml", mock=False, host=host, port=1)
    assert [w for w in warned if not any(line.startswith(w) for line in lines)] == []
    assert len([line for line in lines if line.startswith("WARNING:")]) == len(warned)


def test_the_summary_names_models_and_adapters_never_keys() -> None:
    lines = startup_summary(make_config(MODELS, environ=ENV), config_file="c.yaml", mock=True, host="0.0.0.0", port=8080)
    assert lines[:4] == ["config: c.yaml", "models: gpt (openai), mock (mock); default: gpt",
                         "--mock: every model answers from the offline mock adapter", "demo page: http://127.0.0.1:8080/"]
    assert "sk-secret" not in "".join(lines)


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.2", True), ("::1", True), ("0.0.0.0", False),
                                                ("10.0.0.1", False), ("::", False), ("example.org", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_cli_prints_the_summary_at_start(tmp_path: Path) -> None:
    with proxy_process(tmp_path) as running:
        pass
    config = tmp_path / "config.yaml"
    assert running.stderr[:5] == [f"llm-sse-proxy: config: {config}", "llm-sse-proxy: models: mock (mock); default: mock",
                                  f"llm-sse-proxy: demo page: http://127.0.0.1:{running.port}/",
                                  "llm-sse-proxy: resumable streams: memory store, this process only (grace 10 s, "
                                  "retention 300 s)",
                                  "llm-sse-proxy: CORS: \"*\" (any web page can read the streams; list your site's "
                                  "origins in server.cors_origins before you deploy)"]


@pytest.mark.parametrize(("resume", "expected"), [
    ({}, ["resumable streams: memory store, this process only (grace 10 s, retention 300 s)"]),
    ({"enabled": False}, ["resumable streams: off (a client that leaves cancels its upstream)"]),
    ({"redis_url": "redis://:hunter2-password@db.example:6380/1"},
     ["resumable streams: memory store, this process only (grace 10 s, retention 300 s)",
      "shared limits, routing state and budgets: redis at db.example:6380"]),
    ({"store": "redis", "redis_url": "redis://user:hunter2-password@10.0.0.7/0", "grace": 5},
     ["resumable streams: redis at 10.0.0.7:6379 (grace 5 s, retention 300 s)",
      "shared limits, routing state and budgets: redis at 10.0.0.7:6379"]),
])
def test_the_summary_names_the_store_and_the_redis_endpoint_never_its_credentials(
        resume: dict, expected: list[str]) -> None:
    # Issue 26 item 12: a down Redis was invisible until the first request.
    lines = startup_summary(make_config(MODELS, environ=ENV, resume=resume), config_file="c.yaml", mock=False,
                            host="127.0.0.1", port=1)
    assert [line for line in lines if line.startswith(("resumable", "shared"))] == expected
    assert "hunter2" not in "".join(lines) and not any(line.startswith("WARNING") for line in lines)


def test_a_redis_down_at_start_is_a_warning_in_the_summary_and_the_proxy_still_starts(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with proxy_process(tmp_path, resume={"redis_url": f"redis://:hunter2-password@127.0.0.1:{port}/0"}) as running:
        pass
    warnings = [line for line in running.stderr if "WARNING" in line]
    assert warnings == [f"llm-sse-proxy: WARNING: redis at 127.0.0.1:{port} does not answer (ConnectionError): "
                        "requests that need it get 503 store_unavailable until it does"]
    assert "hunter2" not in "\n".join(running.stderr)
