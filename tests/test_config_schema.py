"""config.schema.json is current, and it accepts the configs we ship and refuses what the loader refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llm_sse_proxy.proxy.config.schema import render

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "config.schema.json").read_text())


def test_the_committed_schema_is_current() -> None:
    assert (ROOT / "config.schema.json").read_text() == render(), "run: python -m llm_sse_proxy.proxy.config.schema > config.schema.json"


@pytest.mark.parametrize("path", ["config.yaml", "proxy/server/starter_config.yaml"])
def test_the_shipped_configs_match_the_schema(path: str) -> None:
    jsonschema.validate(yaml.safe_load((ROOT / path).read_text()), SCHEMA)


def shipped(**change: Any) -> dict[str, Any]:
    return {**yaml.safe_load((ROOT / "config.yaml").read_text()), **change}


@pytest.mark.parametrize("config", [
    shipped(serverr={}),
    shipped(server={"port": 70000}),
    shipped(models=[{"name": "m", "adaptor": "mock"}]),
    shipped(models=[{"name": "m", "adapter": "openai", "model": "x"}]),  # no base_url
    shipped(models=[{"name": "m", "adapter": "mock", "base_url": "http://x"}]),  # another adapter's option
    shipped(auth={"keys": ["a-key-written-in-the-file"]}),
])
def test_the_schema_refuses_what_the_loader_refuses(config: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)
