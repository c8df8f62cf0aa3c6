"""Canary keys: no upstream key, client key or stream token appears in anything a client or an operator sees.

Every test drives error paths, captures everything (bodies, headers, /models, /metrics, log records,
a subprocess's output) and greps it for the canaries.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml

from tests.conftest import chat_body, proxy, read_stream
from tests.test_concurrency_and_shutdown import free_port, wait_healthy
from tests.upstream_fixtures import DIALECTS, mock_upstream, model_at, upstream_config

pytestmark = pytest.mark.anyio

UPSTREAM_CANARY = "canary-upstream-key-7d1e9a0b3c5f"  # no sk- prefix: the exact-match redaction must catch it
SK_CANARY = "sk-canary-upstream-0a9b8c7d6e5f"
CLIENT_CANARY = "canary-client-key-5b6c7d8e9f0a1b2c"
CANARIES = (UPSTREAM_CANARY, SK_CANARY, CLIENT_CANARY, "0a9b8c7d6e5f", "7d1e9a0b3c5f")


def assert_clean(*captured: object) -> None:
    text = "\n".join(str(c) for c in captured)
    for canary in CANARIES:
        assert canary not in text


class Capture:
    """Everything the client saw, as text."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def add(self, response: httpx2.Response, body: bytes | str = b"") -> None:
        self.seen += [str(response.status_code), str(dict(response.headers)), str(body or response.content)]


def model(up, name: str, upstream_model: str, key: str = UPSTREAM_CANARY, **extra) -> dict:
    return {**up.model(name, upstream_model, **extra), "api_key": key}


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_upstream_key_never_leaves_on_any_error_path(dialect: str, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    capture = Capture()
    async with mock_upstream() as up:
        models = [
            model(up, "echo401", "gpt+fail=9:401+echo_key=1", dialect=dialect),
            model(up, "sk401", "gpt+fail=9:401+echo_key=1", key=SK_CANARY, dialect=dialect),
            model(up, "quota", "gpt+fail=9:429+error_type=insufficient_quota+echo_key=1", dialect=dialect),
            model(up, "flaky", "gpt+fail=9:503+echo_key=1", dialect=dialect),
            {**model_at(f"http://127.0.0.1:{free_port()}", dialect, "down"), "api_key": UPSTREAM_CANARY},
            model(up, "midstream", "gpt+error_after=2", dialect=dialect),
        ]
        async with proxy(upstream_config(models)) as client:
            for m in models:
                response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(model=m["name"]))
                capture.add(response, str(parsed))
                assert "error" in str(parsed)
            for path in ("/models", "/metrics", "/healthz"):
                capture.add(await client.get(path))
    sent = {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key", "ollama": "authorization",
            "openai_responses": "authorization"}
    assert UPSTREAM_CANARY in up.recorder.attempts[0].headers[sent[dialect]]  # the canary was sent
    assert all(UPSTREAM_CANARY not in str(a.body) for a in up.recorder.attempts)  # in a header only
    assert_clean(*capture.seen, caplog.text, [r.getMessage() for r in caplog.records])


def exploding_transport(error: BaseException) -> httpx2.MockTransport:
    """An upstream client whose body raises mid-stream, the way an SDK or transport bug would."""

    async def body():
        yield b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
        raise error

    return httpx2.MockTransport(lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                                content=body()))


@pytest.mark.parametrize("error", [RuntimeError(f"bug near {UPSTREAM_CANARY}"), KeyError(UPSTREAM_CANARY)])
async def test_an_unexpected_sdk_exception_is_logged_without_its_message(error: Exception, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    config = upstream_config([{"name": "gpt", "adapter": "openai", "base_url": "http://upstream.test/v1",
                               "api_key": UPSTREAM_CANARY, "model": "m"}])
    factory = lambda _model: httpx2.AsyncClient(transport=exploding_transport(error))  # noqa: E731
    async with proxy(config, http_client_factory=factory) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    assert '"type":"internal_error"' in str(parsed).replace(" ", "") or "internal_error" in str(parsed)
    assert "relay failed with" in caplog.text  # it was logged, with its stack
    assert_clean(str(parsed), caplog.text, [r.getMessage() for r in caplog.records])


async def test_client_keys_and_tokens_are_never_logged(caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    from tests.conftest import make_config

    config = make_config(auth={"keys": ["${CANARY_CLIENT_KEYS}"]}, environ={"CANARY_CLIENT_KEYS": CLIENT_CANARY})
    capture = Capture()
    async with proxy(config) as client:
        bearer = {"authorization": f"Bearer {CLIENT_CANARY}"}
        issued = await client.post("/token", headers=bearer)
        token = issued.json()["token"]
        response, parsed = await read_stream(client, "GET", "/stream", params={"token": token, "prompt": "p"})
        capture.add(response, str(parsed))
        reused = await client.get("/stream", params={"token": token})
        capture.add(reused)
        misuse = await client.get("/stream", params={"key": CLIENT_CANARY, "token": CLIENT_CANARY})
        capture.add(misuse)
        wrong = await client.post("/chat", json=chat_body(), headers={"authorization": f"Bearer {CLIENT_CANARY}x"})
        capture.add(wrong)
        capture.add(await client.get("/metrics"))
    assert response.status_code == 200 and reused.status_code == 401 and misuse.status_code == 401
    assert wrong.status_code == 401
    # The test's own HTTP client logs its URLs, tokens included; the proxy's upstream client never sees them.
    records = [r for r in caplog.records if not r.name.startswith(("httpx2", "httpcore2"))]
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
    assert token not in logs and "token=" not in logs
    assert_clean(*capture.seen, logs)


BAD_CONFIGS = {
    "plain key in auth.keys": {"auth": {"keys": [UPSTREAM_CANARY]}},
    "plain token secret": {"auth": {"token_secret": UPSTREAM_CANARY * 2}},
    "key as a mapping": {"models": [{"name": "m", "adapter": "openai", "base_url": "http://x/v1", "model": "m",
                                     "api_key": {"value": UPSTREAM_CANARY}}]},
    "key where the URL goes": {"models": [{"name": "m", "adapter": "openai", "base_url": UPSTREAM_CANARY,
                                           "model": "m", "api_key": UPSTREAM_CANARY}]},
    "unknown field holding a key": {"models": [{"name": "m", "adapter": "openai", "base_url": "http://x/v1",
                                                "model": "m", "apikey": UPSTREAM_CANARY}]},
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_config_errors_never_print_a_key(tmp_path: Path, name: str) -> None:
    raw = {"default_model": "m", "models": [{"name": "m", "adapter": "mock"}], **BAD_CONFIGS[name]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_proxy(path)
    assert result.returncode == 2 and "config error" in result.stderr
    assert_clean(result.stdout, result.stderr)


def test_a_yaml_error_on_the_key_line_does_not_print_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"default_model: m\nmodels:\n  - {{name: m, adapter: openai, api_key: {UPSTREAM_CANARY}: x\n")
    result = run_proxy(path)
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert_clean(result.stdout, result.stderr)


def run_proxy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path)], capture_output=True, text=True,
                          timeout=30)


async def test_a_debug_level_proxy_process_prints_no_secret(tmp_path: Path) -> None:
    async with mock_upstream() as up:
        port = free_port()
        raw = {
            "server": {"port": port},
            "auth": {"keys": ["${CANARY_CLIENT_KEYS}"]},
            "default_model": "echo401",
            "models": [model(up, "echo401", "gpt+fail=9:401+echo_key=1"), model(up, "ok", "gpt"),
                       {"name": "down", "adapter": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                        "api_key": "${CANARY_UPSTREAM_KEY}", "model": "m"}],
        }
        raw["models"][0]["api_key"] = "${CANARY_UPSTREAM_KEY}"
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        env = {"PATH": "/usr/bin:/bin", "CANARY_CLIENT_KEYS": CLIENT_CANARY, "CANARY_UPSTREAM_KEY": UPSTREAM_CANARY}
        process = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path), "--log-level", "debug"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            await wait_healthy(port)
            seen = await exercise(f"http://127.0.0.1:{port}")
        finally:
            process.terminate()
            out, err = process.communicate(timeout=15)
    assert b'"reason":"error"' in err  # the access log went to stderr: the run did reach the error paths
    assert_clean(seen, out.decode(errors="replace"), err.decode(errors="replace"))


async def exercise(url: str) -> list[str]:
    bearer = {"authorization": f"Bearer {CLIENT_CANARY}"}
    seen: list[str] = []
    async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
        for name in ("echo401", "ok", "down"):
            seen.append((await client.post("/chat", json=chat_body(model=name), headers=bearer)).text)
        token = (await client.post("/token", headers=bearer)).json()["token"]
        seen.append((await client.get("/stream", params={"token": token, "model": "ok"})).text)
        seen.append((await client.get("/stream", params={"token": token})).text)
        seen.append((await client.get("/metrics")).text)
    return seen


GROQ_CANARY = "gsk_canary7Q3ZxW7vLk2PjN8sRt5YbHc1M"  # echoed cut short, or inside Basic credentials (issue 16)


@pytest.mark.parametrize("shape", ["prefix", "basic"])
async def test_a_key_echoed_cut_short_or_base64_encoded_never_leaves(shape: str, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with mock_upstream() as up:
        async with proxy(upstream_config([model(up, "gpt", f"gpt+fail=9:401+echo_key={shape}", key=GROQ_CANARY)])) as client:
            response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    seen = "\n".join([str(parsed), caplog.text, *(r.getMessage() for r in caplog.records)])
    assert "Incorrect API key provided:" in seen and "[redacted]" in str(parsed)  # echoed, then redacted
    runs = [GROQ_CANARY[i : i + 12] for i in range(len(GROQ_CANARY) - 11)]
    basic = base64.b64encode(f"user:{GROQ_CANARY}".encode()).decode()[8:-4]
    assert not any(run in seen for run in runs) and basic not in seen
