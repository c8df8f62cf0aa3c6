"""A JSON Schema for config.yaml, generated from the pydantic models, so editors complete and check it.

`python -m llm_sse_proxy.proxy.config.schema > config.schema.json` regenerates the committed file; a test checks it is
current. The schema describes the file as written: a model's adapter options sit beside `name` and
`adapter` (one shape per adapter), and `auth.keys` holds `${VAR}` references or `sha256:` digests.
"""

from __future__ import annotations

import json
from typing import Any

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.proxy.config import Config, DeploymentConfig, ModelConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    defs = schema["$defs"]
    models = [_model_schema(name, defs) for name in sorted(REGISTRY)] + [_routed_model_schema(defs)]
    schema["properties"]["models"]["items"] = {"oneOf": models}
    del defs[ModelConfig.__name__], defs[DeploymentConfig.__name__]
    _describe_auth_as_written(defs["AuthConfig"])
    return {"$schema": SCHEMA_DIALECT, "title": "llm-sse-proxy config.yaml", **schema}


def _model_schema(adapter: str, defs: dict[str, Any]) -> dict[str, Any]:
    """`name`, `adapter: <this one>` and the common keys, beside this adapter's own options."""
    common = _common(ModelConfig, defs)
    del common["deployments"]
    return {"title": f"a model on the {adapter} adapter", **_with_options(adapter, common, ["name"], defs)}


def _routed_model_schema(defs: dict[str, Any]) -> dict[str, Any]:
    """A model with `deployments:` (issue 22): each one an adapter and its options, beside the routing keys."""
    common = _common(ModelConfig, defs)
    del common["adapter"]
    deployment = _common(DeploymentConfig, defs)
    common["deployments"] = {"type": "array", "minItems": 1, "items": {
        "oneOf": [{"title": f"a deployment on the {name} adapter", **_with_options(name, deployment, [], defs)}
                  for name in sorted(REGISTRY)]}}
    return {"title": "a model with deployments", "type": "object", "properties": common,
            "required": ["name", "deployments"], "additionalProperties": False}


def _common(section: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    schema = section.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    properties: dict[str, Any] = schema["properties"]
    del properties["options"]
    return properties


def _with_options(adapter: str, common: dict[str, Any], required: list[str], defs: dict[str, Any]) -> dict[str, Any]:
    options = REGISTRY[adapter].options.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(options.pop("$defs", {}))
    for field in options.get("properties", {}).values():
        if field.get("format") == "password":
            field.pop("default", None)  # a masked "**********": no value to suggest
    return {
        "type": "object",
        "properties": {**common, **options.get("properties", {}), "adapter": {"const": adapter}},
        "required": [*required, "adapter", *options.get("required", [])],
        "additionalProperties": False,
    }


def _describe_auth_as_written(auth: dict[str, Any]) -> None:
    # key_hashes is what the loader makes of `keys`; the file never holds it.
    del auth["properties"]["key_hashes"]
    auth["properties"]["keys"] = {
        "description": "${VAR} references (of comma-separated keys, 16+ characters each) or sha256:<64 hex> digests",
        "type": "array",
        "items": {"type": "string", "pattern": r"^(\$\{[A-Za-z_][A-Za-z0-9_]*\}|sha256:[0-9a-fA-F]{64})$"},
    }
    auth["properties"]["token_secret"] = {"description": "a ${VAR} reference to 32+ characters", "type": "string"}
    del auth["properties"]["admin_key_hashes"]  # what the loader makes of `admin_keys` (issue 23)
    auth["properties"]["admin_keys"] = {**auth["properties"]["keys"], "description": "keys that may read and reset "
                                        "any identity's usage: " + auth["properties"]["keys"]["description"]}


def render() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
