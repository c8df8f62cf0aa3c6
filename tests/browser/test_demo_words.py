"""tests/node/words.test.mjs: what the demo page says (proxy/static/words.js), as tables under node:test."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import NODE_DIR, node_and_npm


def test_demo_words_tables_pass() -> None:
    node, _ = node_and_npm()
    done = subprocess.run([node, "--test", str(NODE_DIR / "words.test.mjs")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.MULTILINE)
    assert passed and int(passed.group(1)) >= 20, done.stdout
    assert re.search(r"^# fail 0$", done.stdout, re.MULTILINE), done.stdout
