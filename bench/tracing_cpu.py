"""The proxy's server CPU with tracing off and on (issue 25), in alternating runs; the median of each.

    .venv/bin/python bench/tracing_cpu.py --runs 5 --seconds 3 [--chunks 1]

Tracing on exports every span over OTLP/HTTP to a receiver on loopback (tests/otlp_receiver.py, in this
process, on the load core), which decodes them as a collector would; the SDK's export thread runs in the
proxy, so its CPU is counted. Per relayed chunk of 100-chunk streams by default (what tracing must not
change: it does nothing per chunk); `--chunks 1` gives CPU per 1-chunk stream, where a stream's two spans
(the stream's and its attempt's) and their export are the cost. Resume off in both, so that only tracing
differs. Same pinning, mock and client as resume_cpu.py. Bounded: runs x variants x levels x seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import paths  # noqa: E402
import procs  # noqa: E402
import resume_cpu  # noqa: E402
import run  # noqa: E402

from tests.otlp_receiver import otlp_receiver  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency level and run")
    parser.add_argument("--concurrency", default="10,100")
    parser.add_argument("--chunks", type=int, default=run.CHUNKS, help="per stream; 1: CPU per stream")
    args = parser.parse_args()
    run.prepare_machine()
    levels = [int(c) for c in args.concurrency.split(",")]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tracing-")))
        receiver = stack.enter_context(otlp_receiver())
        # A queue deep enough that spans are exported, not dropped, at the bench's stream rates.
        tracing = {"enabled": True, "endpoint": receiver.url, "max_queue_size": 100_000, "schedule_delay": 0.5}
        variants = {"tracing off": {"resume": {"enabled": False}},
                    "tracing on (loopback OTLP)": {"resume": {"enabled": False}, "tracing": tracing}}
        mock_port = procs.free_port()
        mock = procs.start("mock", [sys.executable, str(paths.BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                           run.LOAD_CORE)
        stack.callback(mock.stop)
        procs.wait_listening(mock_port, 10)
        figures: dict[tuple[str, int], list[float]] = {(n, c): [] for n in variants for c in levels}
        for _ in range(args.runs):
            for name, extra in variants.items():
                resume_cpu.measure(name, paths.proxy(mock_port, tmp, name="proxy", extra=extra), mock, levels,
                                   args.seconds, args.chunks, figures)
        print(f"spans received: {len(receiver.spans)}; load average: {procs.load_average()}")
    unit = "us/stream" if args.chunks == 1 else "us/chunk"
    for level in levels:
        off = statistics.median(figures["tracing off", level])
        for name in variants:
            runs = figures[name, level]
            median = statistics.median(runs)
            print(f"c={level:<4} {name:<27} median {median:6.1f} {unit} ({median / off - 1:+.0%})  runs "
                  + " ".join(f"{x:.1f}" for x in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
