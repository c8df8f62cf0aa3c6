"""The proxy's server CPU per relayed chunk with resumable streams on (memory store) and off, in
alternating runs; the median of each (issue 10: "what resume costs per chunk").

    .venv/bin/python bench/resume_cpu.py --runs 5 --seconds 3

Same pinning, mock and streams as `make bench`'s CPU phase (bench/ab.py): 100-chunk zero-delay
streams, the server on core 0, mock and client on core 1. Bounded: runs x 2 variants x levels x seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paths  # noqa: E402
import procs  # noqa: E402
import run  # noqa: E402

VARIANTS = {"resume off": {"resume": {"enabled": False}}, "resume on (memory)": {"resume": {"enabled": True}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency level and run")
    parser.add_argument("--concurrency", default="10,100")
    args = parser.parse_args()
    run.prepare_machine()
    levels = [int(c) for c in args.concurrency.split(",")]
    figures: dict[tuple[str, int], list[float]] = {(n, c): [] for n in VARIANTS for c in levels}
    mock_port = procs.free_port()
    mock = procs.start("mock", [sys.executable, str(paths.BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                       run.LOAD_CORE)
    try:
        procs.wait_listening(mock_port, 10)
        with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
            for _ in range(args.runs):
                for name, extra in VARIANTS.items():
                    measure(name, paths.proxy(mock_port, Path(tmp), name="proxy", extra=extra), mock, levels,
                            args.seconds, figures)
    finally:
        mock.stop()
    for level in levels:
        off = statistics.median(figures["resume off", level])
        for name in VARIANTS:
            runs = figures[name, level]
            median = statistics.median(runs)
            print(f"c={level:<4} {name:<20} median {median:6.1f} us/chunk ({median / off - 1:+.0%})  runs "
                  + " ".join(f"{x:.1f}" for x in runs))
    return 0


def measure(name: str, spec: paths.PathSpec, mock: procs.Proc, levels: list[int], seconds: float,
            figures: dict[tuple[str, int], list[float]]) -> None:
    server = procs.start(name, spec.argv, run.SERVER_CORE, spec.env)
    try:
        if not procs.wait_listening(spec.port, 20):
            raise SystemExit(f"{name} did not start")
        run.run_client(spec, "n100-i0", run.CHUNKS, concurrency=10, duration=1)  # warm-up
        for level in levels:
            point = run.cpu_point(spec, server, mock, level, 1_000_000, seconds)
            if point["bad"]:
                raise SystemExit(f"{name}: {point['bad']} broken streams: {point['errors'][:3]}")
            figures[name, level].append(point["server_cpu_per_chunk_us"])
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
