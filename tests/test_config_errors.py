"""Config errors a person can act on: unknown keys named with the close match, no pydantic wording, a hint
to quote ${VAR} in a flow mapping, a warning for an upstream key written in the file, and the shipped
config.yaml's auth block working as its comment says."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

import pytest

from llm_sse_proxy.proxy.config import ConfigError, load_config

ROOT = Path(__file__).parent.parent
MODEL = "default_model: m\nmodels:\n  - name: m\n    adapter: mock\n"
OPENAI = "default_model: m\nmodels:\n  - name: m\n    adapter: openai\n    base_url: http://127.0.0.1:1/v1\n    model: x\n"
PYDANTIC_WORDING = re.compile(r"Input should|Extra inputs|Field required|String should|Value error|valid integer")


def problem(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize(("text", "expected"), [
    (MODEL.replace("adapter:", "adaptor:"), "models[0] (m).adaptor: unknown key; did you mean 'adapter'?"),
    (MODEL.replace("models:", "model:"), "model: unknown key; did you mean 'models'?"),
    (MODEL + "server: {prot: 1}\n", "server.prot: unknown key; did you mean 'port'?"),
    (MODEL + "    chunk_char: 3\n", "models[0] (m).chunk_char: unknown key; did you mean 'chunk_chars'?"),
    (MODEL + "    fallback: []\n", "models[0] (m).fallback: unknown key; did you mean 'fallbacks'?"),
    (MODEL + "auth: {key: []}\n", "auth.key: unknown key; did you mean 'keys'?"),
    (MODEL.replace("    adapter: mock\n", ""), "models[0] (m).adapter: required (one of: anthropic, gemini, mock, ollama, openai, openai_responses)"),
    (MODEL + "server: {port: eighty}\n", "server.port: must be a whole number"),
    (MODEL + "server: {port: 70000}\n", "server.port: must be at most 65535"),
    (MODEL + "server: {ping_interval: 0}\n", "server.ping_interval: must be more than 0"),
    (MODEL + "metrics: {enabled: maybe}\n", "metrics.enabled: must be true or false"),
    (MODEL + "    reasoning: hide\n", "models[0] (m).reasoning: must be one of 'stream' or 'drop'"),
    (MODEL + "resume: {store: redis}\n", "resume: store: redis needs redis_url (for example ${REDIS_URL})"),
    (OPENAI.replace("http://127.0.0.1:1/v1", "127.0.0.1/v1"), "models[0] (m).base_url: must match the regular expression ^https?://"),
    (OPENAI.replace("    model: x\n", ""), "models[0] (m).model: required"),
])
def test_problems_are_named_in_our_words(tmp_path: Path, text: str, expected: str) -> None:
    message = problem(tmp_path, text)
    assert message == expected
    assert not PYDANTIC_WORDING.search(message)


@pytest.mark.parametrize("text", ["server: {port: ${PORT}}\n", "server:\n  cors_origins: [${ORIGIN}]\n"])
def test_an_unquoted_reference_in_a_flow_mapping_gets_a_hint_to_quote_it(tmp_path: Path, text: str) -> None:
    assert problem(tmp_path, MODEL + text).endswith('; a ${VAR} inside { } or [ ] must be quoted: "${VAR}"')


def test_other_yaml_errors_get_no_quoting_hint(tmp_path: Path) -> None:
    assert "quoted" not in problem(tmp_path, MODEL + "server: {port: 1\n")


def test_an_upstream_key_written_in_the_file_warns_without_echoing_it(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(OPENAI + "    api_key: sk-written-in-the-file\n")
    with caplog.at_level(logging.WARNING, logger="llm_sse_proxy.config"):
        load_config(path, environ={})
    assert caplog.messages == [f"{path}: models[0] (m).api_key: written in the file itself; "
                               "export it and write ${VAR} instead"]


@pytest.mark.parametrize("api_key", ["${OPENAI_API_KEY}", "Bearer ${OPENAI_API_KEY}", "''"])
def test_a_referenced_or_empty_upstream_key_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                          api_key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(OPENAI + f"    api_key: {api_key}\n")
    with caplog.at_level(logging.WARNING, logger="llm_sse_proxy.config"):
        load_config(path, environ={"OPENAI_API_KEY": "sk-test"})
    assert caplog.messages == []


def test_the_shipped_auth_block_works_as_its_comment_says(tmp_path: Path) -> None:
    """Run the comment's own export lines, uncomment its block: the keys and secret it makes are accepted."""
    text = (ROOT / "config.yaml").read_text()
    exports = re.findall(r"^#   (export \w+=.*)$", text, re.MULTILINE)
    block = re.search(r"^# auth:\n(?:#   .*\n)+", text, re.MULTILINE)
    assert exports and block is not None
    done = subprocess.run(["bash", "-c", "; ".join(exports) + "; env"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]}, check=True)
    environ = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("PROXY_"))
    uncommented = text.replace(block[0], "".join(line[2:] + "\n" for line in block[0].splitlines()))
    path = tmp_path / "config.yaml"
    path.write_text(uncommented)
    config = load_config(path, environ=environ)
    assert len(config.auth.key_hashes) == 2 and config.auth.token_secret is not None
    assert "PROXY_TOKEN_SECRET is not set" in problem(tmp_path, uncommented, {"PROXY_KEYS": environ["PROXY_KEYS"]})


@pytest.mark.parametrize("adapter", ["openai", "anthropic", "gemini", "ollama"])
def test_a_base_url_with_user_and_password_is_refused_at_load_without_echoing_them(tmp_path: Path,
                                                                                     adapter: str) -> None:
    # aiohttp raised ValueError for it on every request, which clients saw as internal_error.
    text = (f"default_model: m\nmodels:\n  - name: m\n    adapter: {adapter}\n    model: x\n"
            "    base_url: ${UPSTREAM_URL}\n")
    message = problem(tmp_path, text, {"UPSTREAM_URL": "https://alice:hunter2-canary@llm.example/v1"})
    assert message == ("models[0] (m).base_url: user:password@ in the URL is not supported; put the key in "
                       "api_key (or a header) and write the URL without it")
    assert "hunter2" not in message and "alice" not in message


def test_a_base_url_with_an_at_sign_only_in_its_path_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(OPENAI.replace("http://127.0.0.1:1/v1", "http://127.0.0.1:1/@team/v1"))
    assert load_config(path, environ={}).models[0].options.base_url == "http://127.0.0.1:1/@team/v1"
