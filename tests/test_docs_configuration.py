"""docs/configuration.md documents every key of config.schema.json, no key the schema lacks, and its defaults.

A reference table is one whose header row is `| key | default | meaning |` (or `| adapter | key | default |
meaning |`). The heading above it says where its keys live: its first code span is the section (`server`,
`models[]`) or the adapter (`adapter: mock`, `adapter: anthropic | gemini | ollama`, whose rows then name
theirs in the adapter column); a heading without a code span holds top-level keys. A key that every model
variant has (`name`, `fallbacks`, ...) is documented once, under `models[]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs" / "configuration.md"
SCHEMA = json.loads((ROOT / "config.schema.json").read_text())

_MISSING = object()
# Defaults too long for a table cell: the cell's exact text stands for them.
PROSE_DEFAULTS = {"models[adapter=mock].reply": "a paragraph about SSE"}
# A default cell that is not a code span may say one of these.
WORDS = {"none": [None], "empty": ["", [], {}]}


@dataclass(frozen=True, slots=True)
class Key:
    default: Any = _MISSING
    required: bool = False


def schema_keys(schema: dict[str, Any]) -> dict[str, Key]:
    """Every key path of the schema: `server.host`, `models[].name`, `models[adapter=mock].tool_calls[].name`."""
    return _object_keys(schema, "", schema.get("$defs", {}))


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _alternatives(node: dict[str, Any], defs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    node = _resolve(node, defs)
    yield node
    for alternative in node.get("anyOf", []):
        yield _resolve(alternative, defs)


def _object_keys(node: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Key]:
    node = _resolve(node, defs)
    required = set(node.get("required", []))
    found: dict[str, Key] = {}
    for name, field in node.get("properties", {}).items():
        path = prefix + name
        section = next((n for n in _alternatives(field, defs) if "properties" in n), None)
        if section is not None:  # a section is its heading and table, not a row
            found.update(_object_keys(section, path + ".", defs))
            continue
        found[path] = Key(field.get("default", _MISSING), name in required)
        for items in (n["items"] for n in _alternatives(field, defs) if n.get("type") == "array" and "items" in n):
            found.update(_item_keys(_resolve(items, defs), path, defs))
    return found


def _item_keys(items: dict[str, Any], path: str, defs: dict[str, Any]) -> dict[str, Key]:
    if "oneOf" not in items:
        return _object_keys(items, path + "[].", defs) if "properties" in items else {}
    variants = {_variant_label(v, defs): _object_keys(v, "", defs) for v in items["oneOf"]}
    first, *others = [keys for label, keys in variants.items() if "=" in label]  # a model with deployments aside
    common = {name for name, info in first.items() if all(keys.get(name, _MISSING) == info for keys in others)}
    found = {f"{path}[].{name}": first[name] for name in common}
    for label, keys in variants.items():
        found.update({f"{path}[{label}].{name}": info for name, info in keys.items() if name not in common})
    return found


def _variant_label(variant: dict[str, Any], defs: dict[str, Any]) -> str:
    """`adapter=mock`: the variant's constant property tells it from the others; a model with
    `deployments` has none, and is `models[deployments]`."""
    properties = _resolve(variant, defs)["properties"]
    name, field = next(((n, f) for n, f in properties.items() if "const" in f), ("deployments", None))
    return name if field is None else f"{name}={field['const']}"


# A deployment's adapter keys are its adapter's, documented once in that adapter's table (issue 22).
_DEPLOYMENT_OPTION = re.compile(r"^models\[deployments\]\.deployments\[(adapter=\w+)\]\.")


def _documented_as(path: str) -> str:
    return _DEPLOYMENT_OPTION.sub(r"models[\1].", path)


@dataclass(frozen=True, slots=True)
class Row:
    path: str
    default: str
    line: int


_HEADERS = {"| key | default | meaning |": False, "| adapter | key | default | meaning |": True}
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")


def documented_rows(text: str) -> list[Row]:
    """The rows of every reference table, each with its full key path and its default cell."""
    rows: list[Row] = []
    place: str | None = None
    has_adapter_column: bool | None = None  # None: not in a reference table
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            place = next(iter(_CODE.findall(line)), None)
        elif line.strip() in _HEADERS:
            has_adapter_column = _HEADERS[line.strip()]
        elif has_adapter_column is not None and line.startswith("|"):
            if not set(line) <= set("|-: "):  # the separator row
                rows += _rows(line, number, place, has_adapter_column)
        else:
            has_adapter_column = None
    return rows


def _rows(line: str, number: int, place: str | None, has_adapter_column: bool) -> list[Row]:
    cells = [cell.strip() for cell in _CELL_SPLIT.split(line.strip().strip("|"))]
    adapters, (key_cell, default, *_) = (cells[0], cells[1:]) if has_adapter_column else (None, cells)
    key = _CODE.fullmatch(key_cell)
    assert key is not None, f"{DOCS.name}:{number}: the key cell must be one `key`, not {key_cell!r}"
    return [Row(prefix + key.group(1), default, number) for prefix in _prefixes(place, adapters, number)]


def _prefixes(place: str | None, adapters: str | None, number: int) -> list[str]:
    if place is None:
        return [""]
    if not place.startswith("adapter:"):
        return [place if place.endswith(".") else place + "."]
    in_heading = [name.strip() for name in place.removeprefix("adapter:").split("|")]
    everyone = adapters is None or adapters.startswith("all")  # "all three"
    named = in_heading if everyone else [name.strip() for name in adapters.split(",")]
    assert set(named) <= set(in_heading), f"{DOCS.name}:{number}: {adapters!r} is not among {in_heading}"
    return [f"models[adapter={name}]." for name in named]


def default_problem(row: Row, key: Key) -> str | None:
    """What is wrong with the row's default cell, or None when it says what the schema says."""
    if key.required or row.default == "required":
        return None if key.required and row.default == "required" else f"required is {key.required} in the schema"
    if key.default is _MISSING:
        return None  # the schema suggests none (a secret's, or one the code computes): the prose says it
    if row.path in PROSE_DEFAULTS:
        expected = PROSE_DEFAULTS[row.path]
        return None if row.default == expected else f"expected the cell {expected!r}"
    code = _CODE.match(row.default)
    said = _readings(code.group(1)) if code else WORDS.get(row.default.split(":")[0].strip(), [])
    if any(_same(value, key.default) for value in said):
        return None
    return f"the schema's default is {json.dumps(key.default)}"


def _readings(text: str) -> list[Any]:
    """A code span read as the text it is, and as YAML (`30`, `["*"]`, `{}`)."""
    try:
        return [text, yaml.safe_load(text)]
    except yaml.YAMLError:
        return [text]


def _same(said: Any, default: Any) -> bool:
    return isinstance(said, bool) == isinstance(default, bool) and said == default


def problems(text: str, schema: dict[str, Any]) -> list[str]:
    """Everything that keeps the docs and the schema apart, one line each, sorted by key path."""
    keys, rows = {_documented_as(p): k for p, k in schema_keys(schema).items()}, documented_rows(text)
    documented = {row.path: row for row in rows}
    found = [(path, f"missing from {DOCS.name}: {path} ({_default_of(keys[path])}): add a row to {_table_of(path)}")
             for path in keys.keys() - documented.keys()]
    for row in rows:
        where = f"{DOCS.name}:{row.line}: {row.path}"
        if row.path not in keys:
            found.append((row.path, f"stale in {where} is not in config.schema.json: remove the row"))
        elif documented[row.path] is not row:
            found.append((row.path, f"twice in {where}"))
        elif (problem := default_problem(row, keys[row.path])) is not None:
            found.append((row.path, f"wrong default in {where} says {row.default!r}; {problem}"))
    return [line for _, line in sorted(found)]


def _default_of(key: Key) -> str:
    if key.required or key.default is _MISSING:
        return "required" if key.required else "no default"
    return f"default {json.dumps(key.default)}"


def _table_of(path: str) -> str:
    """The table a missing key's row belongs in, named by its heading's code span."""
    if path.startswith("models[adapter="):
        return f"the `adapter: {path.removeprefix('models[adapter=').split(']')[0]}` table"
    section = path.split(".")[0] if "." in path else None
    return "the top-level table" if section is None else f"the `{section}` table"


def test_the_docs_and_the_schema_have_the_same_keys_and_defaults() -> None:
    found = problems(DOCS.read_text(), SCHEMA)
    assert not found, "docs/configuration.md and config.schema.json disagree:\n" + "\n".join(found)


def test_the_walk_reaches_every_section_and_every_adapter() -> None:
    paths = schema_keys(SCHEMA)
    assert {path.split(".")[0].split("[")[0] for path in paths} == set(SCHEMA["properties"])
    variants = SCHEMA["properties"]["models"]["items"]["oneOf"]
    adapters = {variant["properties"]["adapter"]["const"] for variant in variants if "adapter" in variant["properties"]}
    assert {path.split("]")[0].removeprefix("models[adapter=") for path in paths if path.startswith("models[adapter=")} == adapters
    assert any(path.startswith("models[deployments].deployments[adapter=") for path in paths)


def without_row(text: str, path_suffix: str) -> str:
    lines = text.splitlines()
    doomed = next(i for i, line in enumerate(lines) if line.startswith(f"| `{path_suffix}` |"))
    return "\n".join(lines[:doomed] + lines[doomed + 1:])


@pytest.mark.parametrize(("deleted", "reported"), [
    ("port", "missing from configuration.md: server.port (default 8080): add a row to the `server` table"),
    ("token_ttl", "missing from configuration.md: auth.token_ttl (default 60.0): add a row to the `auth` table"),
    ("continue_with",
     'missing from configuration.md: models[].continue_with (default "none"): add a row to the `models[]` table'),
    ("fail_kind",
     'missing from configuration.md: models[adapter=mock].fail_kind (default "unavailable"): add a row to the '
     "`adapter: mock` table"),
], ids=["server", "auth", "models[]", "adapter: mock"])
def test_a_deleted_row_is_reported(deleted: str, reported: str) -> None:
    assert problems(without_row(DOCS.read_text(), deleted), SCHEMA) == [reported]


SMALL = {
    "$defs": {"Server": {"properties": {"port": {"default": 8080}, "host": {"default": "127.0.0.1"}}},
              "Call": {"properties": {"name": {}, "arguments": {"default": "{}"}}, "required": ["name"]}},
    "properties": {
        "server": {"$ref": "#/$defs/Server"},
        "default_model": {"type": "string"},
        "cap": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "models": {"type": "array", "items": {"oneOf": [
            {"properties": {"adapter": {"const": "a"}, "name": {}, "calls": {"type": "array",
                                                                              "items": {"$ref": "#/$defs/Call"}}}},
            {"properties": {"adapter": {"const": "b"}, "name": {}, "url": {"default": "http://x"}}},
        ]}},
    },
    "required": ["default_model"],
}


def test_the_schema_walk_resolves_refs_anyof_arrays_and_variants() -> None:
    assert schema_keys(SMALL) == {
        "server.port": Key(8080), "server.host": Key("127.0.0.1"), "default_model": Key(required=True),
        "cap": Key(None), "models": Key(), "models[].name": Key(), "models[].adapter": Key(),
        "models[adapter=a].calls": Key(), "models[adapter=a].calls[].name": Key(required=True),
        "models[adapter=a].calls[].arguments": Key("{}"), "models[adapter=b].url": Key("http://x"),
    }


SMALL_DOCS = """
### Top level

| key | default | meaning |
|---|---|---|
| `default_model` | required | the model |
| `cap` | none: unbounded | a cap |
| `models` | none | below |

### `server`

| key | default | meaning |
|---|---|---|
| `port` | `8080` | the port |
| `host` | `127.0.0.1` | the address |

### Every model (`models[]`)

| key | default | meaning |
|---|---|---|
| `name` | none | its name |
| `adapter` | none | which adapter |

### A and B (`adapter: a | b`)

| adapter | key | default | meaning |
|---|---|---|---|
| a | `calls` | none | tool calls |
| a | `calls[].name` | required | one's name |
| a | `calls[].arguments` | `{}` | its JSON |
| b | `url` | `http://x` | its URL |
"""


@pytest.mark.parametrize(("edit", "found"), [
    (("", ""), []),
    (("`8080`", "`8081`"),
     ["wrong default in configuration.md:14: server.port says '`8081`'; the schema's default is 8080"]),
    (("| b | `url`", "| a, b | `url`"),
     ["stale in configuration.md:31: models[adapter=a].url is not in config.schema.json: remove the row"]),
    (("| `cap` | none: unbounded", "| `cap` | `0`"),
     ["wrong default in configuration.md:7: cap says '`0`'; the schema's default is null"]),
    (("| a | `calls[].name` | required", "| a | `calls[].name` | none"),
     ["wrong default in configuration.md:29: models[adapter=a].calls[].name says 'none'; "
      "required is True in the schema"]),
    (("| `host` |", "| `hostname` |"), [
        'missing from configuration.md: server.host (default "127.0.0.1"): add a row to the `server` table',
        "stale in configuration.md:15: server.hostname is not in config.schema.json: remove the row"]),
    (("| `default_model` | required | the model |\n", ""),
     ["missing from configuration.md: default_model (required): add a row to the top-level table"]),
    (("| `name` | none | its name |", "| `name` | none | its name |\n| `name` | none | again |"),
     ["twice in configuration.md:21: models[].name"]),
], ids=["agree", "wrong default", "stale", "null default", "required", "renamed", "missing top-level", "twice"])
def test_the_checker_reports_each_kind_of_disagreement(edit: tuple[str, str], found: list[str]) -> None:
    assert problems(SMALL_DOCS.replace(*edit), SMALL) == found
