"""Config problems in words a person can act on: pydantic's wording stays inside, unknown keys are named
with the close match, and a YAML syntax error caused by an unquoted `${VAR}` says to quote it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

# pydantic error type -> our sentence; {name} fields come from the error's ctx.
_SENTENCES = {
    "missing": "required",
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list", "set_type": "must be a list", "frozen_set_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping", "model_attributes_type": "must be a mapping",
    "greater_than": "must be more than {gt}", "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}", "less_than_equal": "must be at most {le}",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "too_short": "must have at least {min_length} entries", "too_long": "must have at most {max_length} entries",
    "string_pattern_mismatch": "must match the regular expression {pattern}",
    "literal_error": "must be one of {expected}", "enum": "must be one of {expected}",
}


def describe(error: ErrorDetails, known_keys: Iterable[str] = ()) -> str:
    """`field: problem` for one pydantic error; never the input, which may be a key."""
    field = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{field}: {unknown_key(str(error['loc'][-1]), known_keys)}"
    return f"{field}: {_sentence(error)}"


def unknown_key(key: str, known_keys: Iterable[str]) -> str:
    known = sorted(known_keys)
    close = close_match(key, known)
    if close is not None:
        return f"unknown key; did you mean {close!r}?"
    return f"unknown key (known: {', '.join(known)})" if known else "unknown key"


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1)
    return matches[0] if matches else None


def _sentence(error: ErrorDetails) -> str:
    context: dict[str, Any] = {name: _plain(value) for name, value in (error.get("ctx") or {}).items()}
    if error["type"] in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])  # our own validators' words
    template = _SENTENCES.get(error["type"])
    if template is None:
        return error["msg"][:1].lower() + error["msg"][1:]
    return template.format_map(context)


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value  # "more than 0", not 0.0


def yaml_hint(text: str, line: int) -> str:
    """A `${VAR}` inside `{...}` or `[...]` reads as a nested flow mapping: say to quote it."""
    lines = text.splitlines()
    if 0 <= line < len(lines) and "${" in lines[line]:
        return '; a ${VAR} inside { } or [ ] must be quoted: "${VAR}"'
    return ""


def known_keys(model: type[BaseModel], loc: tuple[int | str, ...], written_as: dict[str, str]) -> set[str]:
    """The keys allowed beside the one at `loc` (a path into `model`); `written_as` renames the fields
    the loader fills itself to the keys the file holds."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return set()
        model = annotation
    return {written_as.get(name, name) for name in model.model_fields}
