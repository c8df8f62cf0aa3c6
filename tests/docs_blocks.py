"""The fenced blocks of docs/*.md, each named by the `<!-- check: NAME -->` comment on the line above it.

The name is how tests/test_docs_blocks.py finds a block to run or read; a block without one is a block
no test knows about, and that test fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)(?P<lang>[^`\s]*)\s*$")
MARKER = re.compile(r"^\s*<!-- check: (?P<name>[\w-]+) -->\s*$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: where it is, its name (None when unmarked), its info string and its text."""

    path: str
    line: int
    name: str | None
    lang: str
    code: str


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = _closing(lines, i, opening)
        indent = len(opening["indent"])
        code = "".join(line[indent:] + "\n" for line in lines[i + 1:end])
        found.append(Block(f"docs/{path.name}", i + 1, _marker(lines, i), opening["lang"], code))
        i = end + 1
    return found


def _closing(lines: list[str], start: int, opening: re.Match[str]) -> int:
    """The line that closes the fence opened at `start` (the end of the file if none: CommonMark)."""
    fence = opening["fence"]
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
            return j
    return len(lines)


def _marker(lines: list[str], fence_line: int) -> str | None:
    above = next((line for line in reversed(lines[:fence_line]) if line.strip()), "")
    marked = MARKER.match(above)
    return marked["name"] if marked else None


def doc_blocks() -> list[Block]:
    return [block for path in sorted(DOCS.glob("*.md")) for block in blocks_of(path)]


def block(name: str) -> str:
    """The text of the one block with this name."""
    [found] = [b.code for b in doc_blocks() if b.name == name]
    return found


# Inline code that is a command a reader would type: it starts with one of these programs.
COMMAND = re.compile(
    r"`(?P<command>(?:make|python3?|\.venv/bin/python|\.venv/bin/llm-sse-proxy|llm-sse-proxy|curl|docker|"
    r"redis-server|pip|pipx|npm|kubectl|nginx|py-spy|uvicorn) [^`]+)`"
)


def inline_commands() -> list[tuple[str, str]]:
    """(docs/<page>.md, command) for each command in inline code, outside fenced blocks; spaces normalized."""
    found: list[tuple[str, str]] = []
    for path in sorted(DOCS.glob("*.md")):
        prose = _without_fences(path.read_text(encoding="utf-8"))
        for match in COMMAND.finditer(prose):
            found.append((f"docs/{path.name}", " ".join(match["command"].split())))
    return found


def _without_fences(text: str) -> str:
    kept, inside = [], None
    for line in text.splitlines():
        opening = FENCE.match(line)
        if inside is None and opening:
            inside = opening["fence"]
        elif inside is not None and line.strip().startswith(inside) and set(line.strip()) == {inside[0]}:
            inside = None
        elif inside is None:
            kept.append(line)
    return "\n".join(kept)
