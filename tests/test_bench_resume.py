"""The pure parts of `make bench`'s resume and replicas rows (issue 10): tallies, ratios and their report.

The bench itself is not run here; its modules import each other by name, as scripts in bench/ do.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = str(Path(__file__).resolve().parent.parent / "bench")
sys.path.insert(0, BENCH)
try:
    import replicas
    import report_resume
    import resume_phase
    import run
finally:
    sys.path.remove(BENCH)  # the other tests import from the project's root, not from bench/


@pytest.mark.parametrize(("statuses", "configured", "admitted", "refused", "other", "exact"), [
    ([200] * 20 + [429] * 20, 20, 20, 20, 0, True),
    ([429] * 20 + [200] * 20, 20, 20, 20, 0, True),  # the order does not matter
    ([200] * 19 + [429] * 21, 20, 19, 21, 0, False),  # one too few: a request spent elsewhere
    ([200] * 29 + [429] * 11, 20, 29, 11, 0, False),  # two processes, each its own bucket
    ([200] * 20 + [429] * 19 + [0], 20, 20, 19, 1, False),  # no answer is not a refusal
    ([200] * 20 + [429] * 19 + [503], 20, 20, 19, 1, False),
    ([], 20, 0, 0, 0, False),
])
def test_admission_is_exact_only_with_the_configured_count_admitted_and_the_rest_refused(
        statuses: list[int], configured: int, admitted: int, refused: int, other: int, exact: bool) -> None:
    found = replicas.admission(statuses, configured)
    assert (found["admitted"], found["refused"], found["other"], found["exact"]) == (admitted, refused, other, exact)
    assert found["asked"] == len(statuses) and found["configured"] == configured


@pytest.mark.parametrize(("runs", "ok", "bad", "per_second"), [
    ([{"ok": 100, "bad": 0, "wall": 2.0}], 100, 0, 50.0),
    ([{"ok": 100, "bad": 1, "wall": 2.0}, {"ok": 60, "bad": 2, "wall": 4.0}], 160, 3, 40.0),  # the longest wall
    ([{"ok": 0, "bad": 0, "wall": 0.0}], 0, 0, 0.0),
])
def test_side_by_side_clients_add_their_streams_over_the_longest_wall(runs: list[dict], ok: int, bad: int,
                                                                      per_second: float) -> None:
    found = replicas.combined(runs)
    assert (found["ok"], found["bad"], found["streams_per_s"]) == (ok, bad, per_second)


@pytest.mark.parametrize(("seconds", "p50", "p99"), [
    ([0.001] * 99 + [0.1], 1.0, 1.0),  # nearest rank: the 99th of 100
    ([0.001] * 98 + [0.1, 0.2], 1.0, 100.0),
    ([0.003, 0.001, 0.002], 2.0, 3.0),
])
def test_latency_summary_is_in_milliseconds_by_nearest_rank(seconds: list[float], p50: float, p99: float) -> None:
    found = resume_phase.summary(seconds, cross_replica=True)
    assert math.isclose(found["p50_ms"], p50) and math.isclose(found["p99_ms"], p99)
    assert found["reconnects"] == len(seconds) and found["cross_replica"] is True


def _rounds(per_chunk: list[float]) -> dict[str, list[dict]]:
    return {"c1": [{"ok": 10, "server_cpu_per_chunk_us": x} for x in per_chunk]}


@pytest.mark.parametrize(("off", "memory", "redis", "memory_median", "redis_median"), [
    ([30.0, 40.0, 50.0], [33.0, 40.0, 45.0], [60.0, 100.0, 150.0], 1.0, 2.5),
    ([20.0], [22.0], [40.0], 1.1, 2.0),
])
def test_resume_ratios_are_taken_within_each_round_over_resume_off(off: list[float], memory: list[float],
                                                                   redis: list[float], memory_median: float,
                                                                   redis_median: float) -> None:
    runs = {"llm-sse-proxy-resume-off": _rounds(off), "llm-sse-proxy": _rounds(memory),
            "llm-sse-proxy-redis": _rounds(redis)}
    ratios = run.cpu_ratios(runs)
    assert math.isclose(ratios["resume-memory/off"]["c1"]["median"], memory_median)
    assert math.isclose(ratios["resume-redis/off"]["c1"]["median"], redis_median)


@pytest.mark.parametrize(("memory", "redis", "marks"), [
    (1.05, 1.9, ["met", "met"]),
    (1.10, 2.0, ["met", "met"]),  # the targets are "at most"
    (1.11, 2.01, ["NOT met", "NOT met"]),
])
def test_the_cpu_rows_say_whether_each_target_is_met(memory: float, redis: float, marks: list[str]) -> None:
    def ratio(median: float) -> dict:
        return {"c1": {"median": median, "min": median, "max": median, "runs": [median]}}

    row = next(line for line in report_resume.cpu_table(
        {"ratios": {"resume-memory/off": ratio(memory), "resume-redis/off": ratio(redis)}}).splitlines()
        if line.startswith("| CPU/chunk c=1 "))
    assert [cell.strip().rsplit(")", 1)[1].strip() for cell in row.split("|")[2:4]] == marks


def test_a_run_without_the_resume_phases_adds_no_section() -> None:
    assert report_resume.section({"ratios": {}}) == ""


def test_a_failed_set_up_is_a_row_that_says_so_and_the_others_stay() -> None:
    admitted = {"asked": 40, "configured": 20, "admitted": 20, "refused": 20, "other": 0, "exact": True}
    table = report_resume.replicas_table({"replicas": {
        "2 workers, one port, Redis": {"error": "RuntimeError: did not start in time"},
        "2 replicas, two ports, one Redis": {"throughput": {"streams_per_s": 72.0, "bad": 0}, "admission": admitted,
                                             "shared": True},
        "2 workers, one port, no Redis": {"throughput": {"streams_per_s": 113.0, "bad": 0},
                                          "admission": {**admitted, "admitted": 37, "refused": 3, "exact": False},
                                          "shared": False}}})
    rows = table.splitlines()[2:]
    assert rows[0] == "| 2 workers, one port, Redis | failed: RuntimeError: did not start in time | | | |"
    assert rows[1].endswith("| 72 | 0 | 20 / 20 / 0 of 40 (burst 20) | yes |")
    assert rows[2].endswith("| 113 | 0 | 37 / 3 / 0 of 40 (burst 20) | not shared: a bucket per process |")
