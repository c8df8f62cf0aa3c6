"""What resume costs per stream, not per chunk: the proxy's server CPU per 1-chunk stream with resume
off and on (memory store; `--redis` adds the Redis store), in alternating runs; the median of each.

    .venv/bin/python bench/resume_stream_cpu.py --runs 3 --seconds 3 [--redis]

With one chunk a stream is mostly its fixed costs: the request, and with resume on the generation's
task, its store entry and its stop watch. Same pinning and mock as bench/resume_cpu.py. Bounded: runs x
variants x levels x seconds.
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
import run  # noqa: E402
from resume_cpu import VARIANTS  # noqa: E402

from tests.redis_fixtures import run_redis_server  # noqa: E402

CHUNKS = 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency level and run")
    parser.add_argument("--concurrency", default="10,100")
    parser.add_argument("--redis", action="store_true", help="add the Redis store (a redis-server started here)")
    args = parser.parse_args()
    run.prepare_machine()
    levels = [int(c) for c in args.concurrency.split(",")]
    variants = dict(VARIANTS)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-resume-stream-")))
        if args.redis:
            redis = stack.enter_context(run_redis_server(tmp))
            variants["resume on (redis)"] = {"resume": {"enabled": True, "store": "redis", "redis_url": redis.url}}
        mock_port = procs.free_port()
        mock = procs.start("mock", [sys.executable, str(paths.BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                           run.LOAD_CORE)
        stack.callback(mock.stop)
        procs.wait_listening(mock_port, 10)
        figures: dict[tuple[str, int], list[float]] = {(n, c): [] for n in variants for c in levels}
        for _ in range(args.runs):
            for name, extra in variants.items():
                measure(name, paths.proxy(mock_port, tmp, name="proxy", extra=extra), mock, levels, args.seconds,
                        figures)
    for level in levels:
        off = statistics.median(figures["resume off", level])
        for name in variants:
            runs = figures[name, level]
            median = statistics.median(runs)
            print(f"c={level:<4} {name:<20} median {median:6.1f} us/stream ({median / off - 1:+.0%})  runs "
                  + " ".join(f"{x:.1f}" for x in runs))
    return 0


def measure(name: str, spec: paths.PathSpec, mock: procs.Proc, levels: list[int], seconds: float,
            figures: dict[tuple[str, int], list[float]]) -> None:
    server = procs.start(name, spec.argv, run.SERVER_CORE, spec.env)
    try:
        if not procs.wait_listening(spec.port, 20):
            raise SystemExit(f"{name} did not start")
        run.run_client(spec, f"n{CHUNKS}-i0", CHUNKS, concurrency=10, duration=1)  # warm-up
        for level in levels:
            point = run.cpu_point(spec, server, mock, level, 1_000_000, seconds, chunks=CHUNKS)
            if point["bad"]:
                raise SystemExit(f"{name}: {point['bad']} broken streams: {point['errors'][:3]}")
            figures[name, level].append(point["server_cpu_per_stream_ms"] * 1000)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
