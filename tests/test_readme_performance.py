"""The README's performance tables are the latest `make bench` run's (issue 13): bench/report.py writes them
from bench/results/results.json, between two marker lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
try:
    import report
finally:
    sys.path.remove(str(ROOT / "bench"))  # the other tests import from the project's root, not from bench/

RESULTS = json.loads((ROOT / "bench" / "results" / "results.json").read_text())


def test_the_readme_tables_are_the_committed_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert report.readme_with_tables(readme, RESULTS) == readme, "rerun `python bench/report.py` after a bench run"
    section = readme.split(report.README_BEGIN)[1].split(report.README_END)[0]
    assert RESULTS["meta"]["commit"] in section and "| CPU/1-chunk stream c=100 |" in section


def test_the_tables_are_replaced_not_added_to() -> None:
    stale = f"intro\n{report.README_BEGIN}\n| an old table |\n{report.README_END}\nafter\n"
    once = report.readme_with_tables(stale, RESULTS)
    assert "| an old table |" not in once and once.startswith("intro\n") and once.endswith("\nafter\n")
    assert report.readme_with_tables(once, RESULTS) == once


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks the lines"):
        report.readme_with_tables("# no markers\n", RESULTS)
