"""docs/layout.md names every module of proxy/ and adapters/, and names no module that is gone; the rooms
stay small (STYLE.md point 7: no module over 400 lines, no function over 60)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("proxy", "adapters")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> set[str]:
    found = set()
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if path.name == "__init__.py" and not path.read_text().strip():
                continue  # an empty package marker is no module to describe
            found.add(path.relative_to(ROOT).as_posix())
    return found


def named_in_layout() -> set[str]:
    text = (ROOT / "docs/layout.md").read_text()
    return set(re.findall(r"`((?:proxy|adapters)/[\w/]+\.py)`", text))


def test_layout_names_every_module() -> None:
    missing = sorted(modules() - named_in_layout())
    assert not missing, f"add a line for each to docs/layout.md: {missing}"


def test_layout_names_no_module_that_is_gone() -> None:
    gone = sorted(named_in_layout() - modules())
    assert not gone, f"docs/layout.md names modules that do not exist: {gone}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_module_is_short(module: str) -> None:
    source = (ROOT / module).read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{module}: split it along a seam a newcomer would see"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]  # type: ignore[operator]
    assert not long, f"{module}: functions past one screen: {long}"
