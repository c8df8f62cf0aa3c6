"""Issue 26, item 15: docs/operations.md's metrics table names every metric the proxy exports (it had
lost `llm_proxy_shared_state_errors_total`)."""

from __future__ import annotations

import re
from pathlib import Path

from llm_sse_proxy.proxy.telemetry.metrics import Metrics

TABLE = Path(__file__).parents[1] / "docs" / "operations.md"


def test_every_exported_metric_has_a_row() -> None:
    exported = {family.name + ("_total" if family.type == "counter" else "")
                for family in Metrics().registry.collect() if family.name.startswith("llm_proxy_")}
    rows = set(re.findall(r"^\| `(llm_proxy_\w+)` \|", TABLE.read_text(encoding="utf-8"), re.MULTILINE))
    assert len(exported) > 10 and exported <= rows, sorted(exported - rows)
