"""The README's model blocks for the HTTP adapters are valid config, and each native one streams
(pointed at the mock upstream's dialect instead of the provider)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llm_sse_proxy.proxy.config import parse_config
from tests.conftest import proxy
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import mock_upstream, model_at, upstream_config

pytestmark = pytest.mark.anyio

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
ENVIRON = {"OPENAI_API_KEY": "sk-x" * 5, "ANTHROPIC_API_KEY": "a" * 20, "GEMINI_API_KEY": "g" * 20,
           "AZURE_OPENAI_KEY": "z" * 20}


def readme_models() -> list[dict]:
    """Every model in a README yaml block that starts with `models:`."""
    blocks = re.findall(r"```yaml\n(models:\n.*?)```", README, re.S)
    return [model for block in blocks for model in yaml.safe_load(block)["models"]]


def test_the_readme_shows_one_block_per_adapter_and_they_are_valid() -> None:
    models = readme_models()
    assert {m["adapter"] for m in models} >= {"openai", "anthropic", "gemini", "ollama"}
    config = parse_config({"default_model": models[0]["name"], "models": models}, where="README", environ=ENVIRON)
    assert len(config.models) == len(models)


@pytest.mark.parametrize("dialect", ["anthropic", "gemini", "ollama", "openai_responses"])
async def test_the_readme_block_of_each_native_adapter_streams(dialect: str) -> None:
    (model,) = [m for m in readme_models() if m["adapter"] == dialect]
    async with mock_upstream() as up:
        local = {**model, "base_url": model_at(up.url, dialect)["base_url"], "fallbacks": []}
        local = {k: (v if not str(v).startswith("${") else "k" * 20) for k, v in local.items()}
        async with proxy(upstream_config([local])) as client:
            text, terminate = await ask(client, "echo:from the README")
    assert text == "from the README" and terminate["reason"] == "stop"
    assert up.recorder.attempts[0].model == model["model"]  # Gemini's is in the URL path, the others' in the body
