"""The CPU phase, interleaved: every path's server up at once, then round after round each path in turn.

A shared machine drifts by tens of percent over minutes (issue 13 saw 40 vs 67 µs per chunk for the same
code on two machines, and runs one after another on one machine move too). So each round measures every
path at every level back to back, in an order rotated from round to round; a ratio is taken within a
round, where the paths ran under the same conditions, and the rounds are summarized as median and spread.
Levels: zero-delay 100-chunk streams at c=1, 10 and 100 (CPU per chunk), and 1-chunk streams at c=100
(CPU per stream: the per-request cost on its own): the burst shape, from mock_upstream.py, which leaves in
one or a few segments. Then the shapes users have (issue 27): paced streams (50 chunks/s, a model's
typical rate, started over 1 s), where every chunk arrives alone, and zero-delay streams from an aiohttp
handler that awaits each write (mock_aiohttp.py), each event its own send.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import procs
from paths import BURST, PACED, PACED_MS, PER_WRITE, PER_WRITE_PREFIX, PathSpec


@dataclass(frozen=True)
class Level:
    key: str  # "c1", "c10", "c100", "one-chunk"
    concurrency: int
    streams: int  # at most, within `seconds`
    seconds: float
    chunks: int
    shape: str = BURST

    @property
    def model(self) -> str:
        """The model name that asks the mocks for this level's streams (mock_upstream.py, mock_aiohttp.py)."""
        if self.shape == PACED:
            return f"n{self.chunks}-i{PACED_MS}"
        return f"{PER_WRITE_PREFIX if self.shape == PER_WRITE else ''}n{self.chunks}-i0"

    @property
    def stagger(self) -> float:
        return 1.0 if self.shape == PACED else 0.0  # paced streams start spread over a second, as users arrive



def levels(cpu_levels: tuple[tuple[int, int, float], ...], one_chunk_seconds: float,
           paced: tuple[tuple[int, float], ...] = (), per_write: tuple[tuple[int, int, float], ...] = ()) -> list[Level]:
    found = [Level(f"c{c}", c, streams, seconds, 100) for c, streams, seconds in cpu_levels]
    found.append(Level("one-chunk", 100, 1_000_000, one_chunk_seconds, 1))
    found += [Level(f"{PACED}-c{c}", c, 1_000_000, seconds, 50, PACED) for c, seconds in paced]
    return found + [Level(f"{PER_WRITE}-c{c}", c, streams, seconds, 100, PER_WRITE) for c, streams, seconds in per_write]


Measure = Callable[[PathSpec, procs.Proc, Level], dict]


def rounds(specs: list[PathSpec], mock: procs.Proc, plan_levels: list[Level], count: int, out: Path,
           measure: Measure, warm_up: Callable[[PathSpec], object], say: Callable[[str], None],
           after: Callable[[PathSpec, procs.Proc], object] = lambda spec, server: None) -> dict[str, dict]:
    """Every path at every level, `count` rounds, then `after` on each path while its server is still up;
    returns {path: {level key: [point per round]}}."""
    servers: dict[str, procs.Proc] = {}
    runs: dict[str, dict[str, list[dict]]] = {s.name: {lv.key: [] for lv in plan_levels} for s in specs}
    try:
        for spec in specs:
            servers[spec.name] = _start(spec, mock, out)
            warm_up(spec)
        for number in range(count):
            order = specs[number % len(specs):] + specs[: number % len(specs)]
            say(f"== CPU round {number + 1}/{count}: {', '.join(s.name for s in order)}")
            for level in plan_levels:
                for spec in (s for s in order if level.shape in s.shapes):
                    point = measure(spec, servers[spec.name], level)
                    point["round"] = number
                    runs[spec.name][level.key].append(point)
        for spec in specs:
            after(spec, servers[spec.name])
    finally:
        for server in servers.values():
            if server is not mock:
                server.stop()
    return runs


def _start(spec: PathSpec, mock: procs.Proc, out: Path) -> procs.Proc:
    if not spec.argv:
        return mock  # direct: the client reads the mock itself
    server = procs.start(spec.name, spec.argv, 0, spec.env, log=str(out / "raw" / f"{spec.name}-cpu.log"))
    timeout = 60 if spec.name == "litellm" else 20
    if not spec.resolve_port(timeout) or procs.wait_first_event(server, spec.port, spec.request("n100-i0"), timeout) is None:
        server.stop()
        raise SystemExit(f"{spec.name} did not serve a stream in time; see bench/results/raw/{spec.name}-cpu.log")
    return server


def median_point(points: list[dict], figure: str) -> dict:
    """The round whose `figure` is the median (the lower middle for an even count), with every run's figure."""
    ranked = sorted(points, key=lambda p: p[figure])
    return {**ranked[(len(ranked) - 1) // 2], "runs": [p[figure] for p in points]}


def ratios(runs: dict[str, dict[str, list[dict]]], top: str, bottom: str, figure: Callable[[str], str]) -> dict:
    """{level: {median, min, max, runs}} of top/bottom, each ratio taken within one round."""
    if top not in runs or bottom not in runs:
        return {}
    found = {}
    for key, points in runs[top].items():
        pairs = zip(points, runs[bottom][key])
        values = [a[figure(key)] / b[figure(key)] for a, b in pairs if b[figure(key)] > 0 and a["ok"] and b["ok"]]
        if values:
            found[key] = {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}
    return found
