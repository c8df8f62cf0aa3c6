"""Which config a run reads with no --config, and `llm-sse-proxy init`'s starter config."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from llm_sse_proxy.proxy.server.cli import main
from llm_sse_proxy.proxy.config import ConfigError, load_config
from llm_sse_proxy.proxy.server.starter import PACKAGED_CONFIG, choose_config
from tests.conftest import chat_body, payloads, proxy, read_stream


def test_with_no_config_file_the_packaged_offline_mock_is_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    choice = choose_config(None)
    assert (choice.path, choice.built_in) == (PACKAGED_CONFIG, True)
    assert {m.adapter for m in load_config(choice.path, environ={}).models} == {"mock"}


def test_a_config_yaml_here_wins_over_the_packaged_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("")
    assert choose_config(None).built_in is False
    assert choose_config("other.yaml").path == Path("other.yaml")


def test_init_writes_a_starter_config_for_a_real_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert "wrote config.yaml: export OPENAI_API_KEY" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="environment variable OPENAI_API_KEY is not set"):
        load_config(tmp_path / "config.yaml", environ={})
    config = load_config(tmp_path / "config.yaml", environ={"OPENAI_API_KEY": "sk-test"})
    real = config.model(config.default_model)
    assert real is not None and real.adapter == "openai" and str(real.options.base_url).endswith("/v1")
    assert load_config(tmp_path / "config.yaml", environ={}, mock=True).default_model == config.default_model


def test_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("# my own\n")
    assert main(["init", str(path)]) == 1
    assert path.read_text() == "# my own\n"
    assert capsys.readouterr().err == f"llm-sse-proxy init: {path} already exists; left as it was (name another path)\n"


@pytest.mark.anyio
async def test_a_starter_config_with_a_wrong_base_url_fails_visibly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 26, item 9: the starter config once fell back to the mock, so a wrong base_url or key gave a clean
    answer from the mock; now the client sees the error, on both doors."""
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    with socket.socket() as sock:  # a port nothing listens on: the wrong base_url
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "config.yaml"
    path.write_text(path.read_text().replace("https://api.openai.com/v1", f"http://127.0.0.1:{port}/v1"))
    config = load_config(path, environ={"OPENAI_API_KEY": "sk-test"})
    mocks = {m.name for m in config.models if m.adapter == "mock"}
    assert not [m.name for m in config.models if mocks & set(m.fallbacks)]
    async with proxy(config.model_copy(update={"retry": config.retry.model_copy(update={"backoff_initial": 0.01,
                                                                                        "backoff_max": 0.01})})) as client:
        _, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        door = await client.post("/v1/chat/completions", json=chat_body())
    terminate = payloads(parsed)[-1]
    assert terminate["reason"] == "error" and f"127.0.0.1:{port}" in terminate["error"]["message"]
    assert door.status_code == 502
