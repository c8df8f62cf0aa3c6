"""`llm-sse-proxy mock-upstream --help` and the table in docs/mock-upstream.md list every mock option, and its
rehearsal (`fail=2:503+cycle=3`: two 503s, retried, then the answer) holds on every run, not only the first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_sse_proxy.mock_upstream.plan import OPTIONS
from tests.conftest import proxy
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

README = (Path(__file__).parent.parent / "docs" / "mock-upstream.md").read_text()  # the rehearsal upstream


def test_the_help_lists_every_option() -> None:
    done = subprocess.run([sys.executable, "-m", "llm_sse_proxy.proxy", "mock-upstream", "--help"], capture_output=True,
                          text=True, timeout=30, check=True)
    listed = set(re.findall(r"\b([a-z_]+)=", done.stdout.split("Faults and options", 1)[1]))
    assert listed >= OPTIONS, sorted(OPTIONS - listed)


def test_the_readme_table_lists_every_option() -> None:
    table = README.split("| option | effect |", 1)[1].split("\n\n", 1)[0]
    rows = [row for row in table.splitlines() if row.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`([a-z_]+)=", row)}
    assert listed == OPTIONS, sorted(OPTIONS ^ listed)


def rehearsal_models(url: str) -> list[dict]:
    text = README.split("cat > /tmp/rehearse.yaml <<'YAML'\n", 1)[1].split("YAML\n", 1)[0]
    return yaml.safe_load(text.replace("http://127.0.0.1:9000", url))["models"]


async def test_the_readmes_rehearsal_is_true_on_every_run() -> None:
    async with mock_upstream() as up:
        config = upstream_config(rehearsal_models(up.url), default_model="flaky")
        async with proxy(config) as client:
            runs = [await ask(client) for _ in range(3)]
    assert [(terminate["reason"], terminate["model"]) for _, terminate in runs] == [("stop", "flaky")] * 3
    assert [a.status for a in up.recorder.attempts] == [503, 503, 200] * 3


@pytest.mark.parametrize(("fault", "statuses"), [
    ("fail=2:503", [503, 503, 200, 200, 200, 200]),  # the lifetime count, as before
    ("fail=1:429+cycle=2", [429, 200, 429, 200, 429, 200]),
    ("fail=2:503+cycle=3", [503, 503, 200, 503, 503, 200]),
])
async def test_cycle_restarts_the_fail_count(fault: str, statuses: list[int]) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", f"gpt+{fault}")], retry={"attempts": 1})
        async with proxy(config) as client:
            for _ in statuses:
                await ask(client)
    assert [a.status for a in up.recorder.attempts] == statuses
