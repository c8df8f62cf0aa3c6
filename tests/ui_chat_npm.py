"""tests/ui_chat's locked npm packages (`ai`, `@ai-sdk/react`, react, esbuild), installed once per run, and the
Node harness that drives the SDK against the proxy's UI message stream door."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import node_and_npm

UI_CHAT_DIR = Path(__file__).parent / "ui_chat"


@pytest.fixture(scope="session")
def ui_chat_node() -> str:
    """`npm ci` in tests/ui_chat (from its package-lock.json); return the node binary."""
    node, npm = node_and_npm()
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=UI_CHAT_DIR,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


async def run_steps(node: str, steps: list[dict[str, Any]], timeout: float = 60) -> list[dict[str, Any]]:
    """Run tests/ui_chat/ui_chat.mjs on `steps`; one result per step."""
    with anyio.fail_after(timeout):
        done = await anyio.run_process([node, str(UI_CHAT_DIR / "ui_chat.mjs")],
                                       input=json.dumps({"steps": steps}).encode(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(steps)
    return results
