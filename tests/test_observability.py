"""GET /metrics, the JSON access-log line per stream, and request ids."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_sse_proxy.proxy.telemetry.access_log import request_id
from tests.conftest import RESUME_OFF, chat_body, make_config, proxy, read_stream
from tests.test_disconnect import leave_after, wait_for_log
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]


@pytest.mark.parametrize(("given", "kept"), [
    ("abc-123", "abc-123"), ("a" * 100, "a" * 64), ("bad id\r\nx-evil: 1", "badidx-evil:1"), ("ünï", "n"),
    ("req:1.2_3", "req:1.2_3"),
])
def test_request_ids_are_sanitized_and_bounded(given: str, kept: str) -> None:
    assert request_id({"x-request-id": given}) == kept


def test_a_missing_or_empty_request_id_is_generated() -> None:
    assert len(request_id({})) == 32 and request_id({}) != request_id({})
    assert len(request_id({"x-request-id": "\x00\x01"})) == 32


async def test_metrics_count_what_happened(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up:
        models = [
            up.model("flaky", "f+fail=2:503"),
            up.model("broken", "b+fail=9:500", fallbacks=["ok"]),
            up.model("ok", "ok"),
            up.model("slow", "s+delay_ms=200"),
        ]
        async with proxy(upstream_config(models, limits={"max_chars": 50}, **RESUME_OFF)) as client:
            for name in ("flaky", "broken", "ok"):
                await read_stream(client, "POST", "/chat", json=chat_body(model=name))
            await client.post("/chat", json=chat_body("x" * 51))
            await client.post("/chat", content=b"{", headers={"content-type": "application/json"})
            await client.get("/nowhere")
            await leave_after(client_for(client, "slow"), events=2)
            await wait_for_log(caplog, '"reason":"cancelled"')
            response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)
    assert found[("llm_proxy_active_streams", ())] == 0
    assert found[("llm_proxy_streams_total", (("model", "flaky"), ("reason", "stop")))] == 1
    assert found[("llm_proxy_streams_total", (("model", "broken"), ("reason", "stop")))] == 1
    assert found[("llm_proxy_streams_total", (("model", "slow"), ("reason", "cancelled")))] == 1
    assert found[("llm_proxy_retries_total", (("type", "upstream_unavailable"),))] == 4  # 2 flaky + 2 broken
    assert found[("llm_proxy_upstream_errors_total", (("type", "upstream_unavailable"),))] == 5  # + broken's last
    assert found[("llm_proxy_fallbacks_total", (("model", "broken"),))] == 1
    assert found[("llm_proxy_client_disconnects_total", (("reason", "closed"),))] == 1
    assert found[("llm_proxy_rejected_requests_total", (("reason", "payload_too_large"),))] == 1
    assert found[("llm_proxy_rejected_requests_total", (("reason", "invalid_request"),))] == 1
    assert found[("llm_proxy_rejected_requests_total", (("reason", "not_found"),))] == 1
    assert found[("llm_proxy_time_to_first_token_seconds_count", (("model", "ok"),))] == 2  # ok, and broken's
    assert found[("llm_proxy_stream_duration_seconds_count", (("model", "flaky"),))] == 1
    assert found[("llm_proxy_tokens_total", (("direction", "out"), ("model", "flaky")))] > 0
    assert found[("llm_proxy_tokens_total", (("direction", "in"), ("model", "ok")))] > 0


def client_for(client, model: str):
    """`leave_after` posts chat_body(); route it to `model` by making that the body's model."""
    class Routed:
        def stream(self, method, url, json):
            return client.stream(method, url, json={**json, "model": model})
    return Routed()


async def test_one_json_access_line_per_stream_without_the_prompt(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")])) as client:
        response, _ = await read_stream(client, "POST", "/chat", json=chat_body("secret prompt text"),
                                        headers={"x-request-id": "trace-42"})
        got, _ = await read_stream(client, "GET", "/stream", params={"prompt": "another secret", "token": "t0k"})
    [first, second] = access_lines(caplog)
    assert response.headers["x-request-id"] == "trace-42" and first["request_id"] == "trace-42"
    assert got.headers["x-request-id"] == second["request_id"] and len(second["request_id"]) == 32
    assert first["model"] == "gpt" and first["answered_by"] == "gpt" and first["reason"] == "stop"
    assert first["error_type"] is None and first["attempts"] == 1 and first["client_disconnect"] is False
    assert first["ttft"] > 0 and first["duration"] >= first["ttft"]
    assert first["tokens_in"] > 0 and first["tokens_out"] > 0 and first["client"] == "ip:127.0.0.1"
    text = caplog.text
    assert "secret" not in text and "t0k" not in text and "prompt" not in first


async def test_log_prompts_puts_the_prompt_in_the_line_and_access_log_off_silences_it(caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with proxy(make_config(logging={"log_prompts": True})) as client:
        await read_stream(client, "POST", "/chat", json=chat_body("tell me"))
    async with proxy(make_config(logging={"access_log": False})) as client:
        await read_stream(client, "POST", "/chat", json=chat_body("tell me"))
    assert [line["prompt"] for line in access_lines(caplog)] == ["tell me"]


async def test_a_prompt_with_a_lone_surrogate_is_refused_without_a_stack_in_the_log(caplog) -> None:
    caplog.set_level(logging.INFO)
    body = b'{"messages": [{"role": "user", "content": "half \\ud800 a pair"}]}'  # valid JSON, not valid UTF-16
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", "gpt")], logging={"log_prompts": True})) as client:
        response = await client.post("/chat", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "surrogate" in response.json()["error"]["message"]
    assert up.recorder.count() == 0 and access_lines(caplog) == []
    assert "Traceback" not in caplog.text and "internal_error" not in caplog.text


async def test_errors_echo_the_request_id_and_metrics_can_be_turned_off() -> None:
    async with proxy(make_config(metrics={"enabled": False})) as client:
        error = await client.post("/chat", json={"messages": []}, headers={"x-request-id": "r-1"})
        missing = await client.get("/metrics", headers={"x-request-id": "r-2"})
        debug = await client.get("/debug/runtime")
    assert error.status_code == 400 and error.headers["x-request-id"] == "r-1"
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "r-2"
    assert debug.status_code == 404  # only when server.debug_endpoints is on


async def test_the_debug_endpoint_counts_tasks_and_descriptors() -> None:
    async with proxy(make_config(server={"debug_endpoints": True})) as client:
        runtime = (await client.get("/debug/runtime")).json()
    assert runtime["tasks"] >= 1 and runtime["fds"] >= 3 and runtime["rss_bytes"] > 1 << 20


def test_the_cli_handler_takes_each_access_line_in_one_write(monkeypatch) -> None:
    from llm_sse_proxy.proxy.telemetry import access_log

    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            writes.append(text)

        def flush(self) -> None:
            pass

    logger = logging.getLogger("llm_sse_proxy.access")
    monkeypatch.setattr(logger, "handlers", [access_log.LineHandler(Stream())])
    monkeypatch.setattr(logger, "propagate", False)
    access_log.write({"event": "stream", "prompt": "é", "client_disconnect": True})
    assert writes == ['{"event":"stream","prompt":"é","client_disconnect":true}\n']
