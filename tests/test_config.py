"""config.yaml: errors name the file and the field, and never show a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_sse_proxy.proxy.config import ConfigError, ServerConfig, load_config, parse_config

GOOD = """
default_model: mock
models:
  - name: mock
    adapter: mock
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_offline() -> None:
    config = load_config(Path(__file__).parent.parent / "config.yaml", environ={})
    assert config.server.port == 8080 and config.server.host == "127.0.0.1"
    assert {m.adapter for m in config.models} == {"mock"}


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ={})
    assert config.server.ping_interval == 15 and config.server.cors_origins == ["*"]
    assert config.retry.attempts == 3 and config.timeouts.idle == 30
    assert (config.models[0].recovery, config.models[0].continue_with) == ("off", "none")
    assert (config.faults.on_malformed_chunk, config.faults.first_token_timeout, config.faults.content_policy,
            config.faults.max_recoveries) == ("skip", "next_model", "final", 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "not valid YAML: line"),
        ("- just a list", "top level must be a mapping"),
        ("default_model: mock\n", "models: a non-empty list"),
        (GOOD.replace("default_model: mock", "default_model: other"), "default_model: 'other' is not one of the models"),
        (GOOD + "server: {port: eighty}\n", "server.port:"),
        (GOOD + "server: {port: 70000}\n", "server.port:"),
        (GOOD + "server: {colour: blue}\n", "server.colour: unknown key (known: body_timeout,"),
        (GOOD + "retry: {attempts: 0}\n", "retry.attempts:"),
        (GOOD + "server: {send_timeout: 0}\n", "server.send_timeout:"),
        (GOOD + "metrics: {enabled: maybe}\n", "metrics.enabled:"),
        (GOOD + "logging: {prompts: true}\n", "logging.prompts: unknown key; did you mean 'log_prompts'?"),
        (GOOD + "    max_tokens_cap: lots\n", "models[0] (mock).max_tokens_cap:"),
        (GOOD.replace("adapter: mock", "adapter: nope"), "models[0] (mock).adapter: unknown adapter 'nope'"),
        (GOOD + "    chunk_delay_ms: slow\n", "models[0] (mock).chunk_delay_ms:"),
        (GOOD + "    colour: blue\n", "models[0] (mock).colour: unknown key (known: "),
        (GOOD + "    fallbacks: [ghost]\n", "models[0] (mock).fallbacks: unknown model 'ghost'"),
        (GOOD + "    recovery: resume\n", "models[0] (mock).recovery:"),
        (GOOD + "    continue_with: prefill\n", "models[0] (mock).continue_with:"),
        (GOOD + "faults: {on_malformed_chunk: ignore}\n", "faults.on_malformed_chunk:"),
        (GOOD + "faults: {content_policy: retry}\n", "faults.content_policy:"),
        (GOOD + "  - name: mock\n    adapter: mock\n", "duplicate name 'mock'"),
        (GOOD + "    reply: ${MISSING_VAR_FOR_TEST}\n", "models[0] (mock).reply: environment variable MISSING_VAR_FOR_TEST is not set"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(str(path) + ":")
    assert message in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_environment_substitution(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "    reply: 'from ${REPLY_TEXT}!'\n")
    config = load_config(path, environ={"REPLY_TEXT": "env"})
    assert config.models[0].options.reply == "from env!"


@pytest.mark.parametrize(
    ("reply", "environ", "expected"),
    [
        ("${REPLY_TEXT:-fallback}", {"REPLY_TEXT": "env"}, "env"),
        ("${REPLY_TEXT:-fallback}", {}, "fallback"),
        ("${REPLY_TEXT:-fallback}", {"REPLY_TEXT": ""}, "fallback"),  # the shell's ":-": unset or empty
        ("${REPLY_TEXT-fallback}", {"REPLY_TEXT": ""}, ""),  # and "-": unset only
        ("${REPLY_TEXT-fallback}", {}, "fallback"),
        ("${REPLY_TEXT:-}", {}, ""),
        ("a ${REPLY_TEXT:-b} ${OTHER:-c} d", {"OTHER": "o"}, "a b o d"),
        ("${REPLY_TEXT}", {"REPLY_TEXT": "${NOT_READ_AGAIN}"}, "${NOT_READ_AGAIN}"),  # values are not re-read
    ],
)
def test_environment_defaults_like_the_shell(tmp_path: Path, reply: str, environ: dict[str, str], expected: str) -> None:
    config = load_config(write(tmp_path, GOOD + f"    reply: '{reply}'\n"), environ=environ)
    assert config.models[0].options.reply == expected


@pytest.mark.parametrize("reply", ["${REPLY_TEXT:?required}", "${REPLY_TEXT:=x}", "${ REPLY_TEXT }", "${1X}", "${REPLY"])
def test_other_shell_forms_are_refused_not_kept_as_text(tmp_path: Path, reply: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD + f"    reply: '{reply}'\n"), environ={"REPLY_TEXT": "env"})
    assert "models[0] (mock).reply: write ${VAR}, ${VAR:-default} or ${VAR-default}" in str(caught.value)


def test_a_key_cannot_hide_in_a_default(tmp_path: Path) -> None:
    text = GOOD + "auth:\n  keys: ['${PROXY_KEYS:-a-key-written-in-the-file}']\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert "auth.keys[0]: write a ${VAR} reference" in str(caught.value)
    assert "a-key-written" not in str(caught.value)


def test_mock_flag_replaces_every_adapter_and_needs_no_secrets(tmp_path: Path) -> None:
    text = GOOD + "  - name: other\n    adapter: nope\n    api_key: ${NOT_SET_ANYWHERE}\n    fallbacks: [mock]\n"
    config = load_config(write(tmp_path, text), environ={}, mock=True)
    assert [(m.name, m.adapter, m.fallbacks) for m in config.models] == [("mock", "mock", []), ("other", "mock", ["mock"])]


def test_bad_config_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "server: {port: eighty}\n")
    result = subprocess.run(
        [sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"{path}: server.port:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_help_describes_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "llm_sse_proxy.proxy", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for word in ("--config", "--mock", "--port", "mock-upstream", "/stream"):
        assert word in result.stdout


def test_the_readmes_configuration_example_is_valid_and_shows_the_server_defaults() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("## Configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(example), where="README", environ={})
    assert config.server == ServerConfig()


def test_a_bare_yaml_off_is_recovery_off(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + "    recovery: off\n    continue_with: prefix_flag\n"), environ={})
    assert (config.models[0].recovery, config.models[0].continue_with) == ("off", "prefix_flag")
