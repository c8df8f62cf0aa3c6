"""The proxy's server CPU with resumable streams off and on (memory store; `--redis` adds the Redis store),
in alternating runs; the median of each (issue 10: "what resume costs").

    .venv/bin/python bench/resume_cpu.py --runs 5 --seconds 3 [--redis] [--chunks 1]
    .venv/bin/python bench/resume_cpu.py --prefill 100000 --runs 5 --chunks 1 --concurrency 100

`--prefill N` (issue 27) measures instead the default config (resume on, memory store, retention an hour)
in two processes side by side, one empty and one that first served N 1-chunk streams (so its store holds
N finished ones), in alternating runs; it prints the ratio filled / empty of the CPU per request.

Per relayed chunk of 100-chunk streams by default; `--chunks 1` gives CPU per 1-chunk stream instead, which
is mostly a stream's fixed costs (the request, and with resume on the generation's task, its store entry and
its stop watch). Same pinning, mock and streams as `make bench`'s CPU phase: zero-delay streams, the server
on core 0, mock and client on core 1. Bounded: runs x variants x levels x seconds.
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

from tests.redis_fixtures import run_redis_server  # noqa: E402

VARIANTS = {"resume off": {"resume": {"enabled": False}}, "resume on (memory)": {"resume": {"enabled": True}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency level and run")
    parser.add_argument("--concurrency", default="10,100")
    parser.add_argument("--chunks", type=int, default=run.CHUNKS, help="per stream; 1: CPU per stream")
    parser.add_argument("--redis", action="store_true", help="add the Redis store (a redis-server started here)")
    parser.add_argument("--prefill", type=int, default=0, help="empty vs N finished streams held (memory store)")
    args = parser.parse_args()
    run.prepare_machine()
    if args.prefill:
        return prefilled(args)
    levels = [int(c) for c in args.concurrency.split(",")]
    variants = dict(VARIANTS)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-resume-")))
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
                        args.chunks, figures)
    unit = "us/stream" if args.chunks == 1 else "us/chunk"
    for level in levels:
        off = statistics.median(figures["resume off", level])
        for name in variants:
            runs = figures[name, level]
            median = statistics.median(runs)
            print(f"c={level:<4} {name:<20} median {median:6.1f} {unit} ({median / off - 1:+.0%})  runs "
                  + " ".join(f"{x:.1f}" for x in runs))
    return 0


def measure(name: str, spec: paths.PathSpec, mock: procs.Proc, levels: list[int], seconds: float, chunks: int,
            figures: dict[tuple[str, int], list[float]]) -> None:
    server = procs.start(name, spec.argv, run.SERVER_CORE, spec.env)
    try:
        if not procs.wait_listening(spec.port, 20):
            raise SystemExit(f"{name} did not start")
        run.run_client(spec, f"n{chunks}-i0", chunks, concurrency=10, duration=1)  # warm-up
        for level in levels:
            point = run.cpu_point(spec, server, mock, level, 1_000_000, seconds, chunks=chunks)
            if point["bad"]:
                raise SystemExit(f"{name}: {point['bad']} broken streams: {point['errors'][:3]}")
            per_stream = chunks == 1
            figures[name, level].append(point["server_cpu_per_stream_ms"] * 1000 if per_stream
                                        else point["server_cpu_per_chunk_us"])
    finally:
        server.stop()


def prefilled(args: argparse.Namespace) -> int:
    """One empty and one filled memory store, each its own proxy process, measured turn about."""
    levels = [int(c) for c in args.concurrency.split(",")]
    extra = {"resume": {"enabled": True, "retention": 3600}, "logging": {"access_log": False}}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-prefill-")))
        mock_port = procs.free_port()
        mock = procs.start("mock", [sys.executable, str(paths.BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                           run.LOAD_CORE)
        stack.callback(mock.stop)
        procs.wait_listening(mock_port, 10)
        servers = {}
        for name in ("empty", "filled"):
            spec = paths.proxy(mock_port, tmp, name=name, extra=extra)
            server = procs.start(name, spec.argv, run.SERVER_CORE, spec.env)
            stack.callback(server.stop)
            if not procs.wait_listening(spec.port, 20):
                raise SystemExit(f"{name} did not start")
            servers[name] = (spec, server)
        spec, _ = servers["filled"]
        filled = run.run_client(spec, "n1-i0", 1, concurrency=100, streams=args.prefill, duration=24 * 3600)
        print(f"prefilled: {filled['ok']} streams ({filled['bad']} broken) in {filled['wall']:.0f} s")
        figures: dict[tuple[str, int], list[float]] = {(n, c): [] for n in servers for c in levels}
        for _ in range(args.runs):
            for name, (spec, server) in servers.items():
                for level in levels:
                    point = run.cpu_point(spec, server, mock, level, 1_000_000, args.seconds, chunks=args.chunks)
                    unit = point["server_cpu_per_stream_ms"] * 1000 if args.chunks == 1 else point["server_cpu_per_chunk_us"]
                    figures[name, level].append(unit)
        for level in levels:
            empty, full = (statistics.median(figures[n, level]) for n in servers)
            print(f"c={level:<4} empty {empty:7.1f}  filled {full:7.1f}  ratio {full / empty:.2f}  runs "
                  + " / ".join(" ".join(f"{x:.0f}" for x in figures[n, level]) for n in servers))
        print("rss (KiB):", {n: procs_rss(s.pid) for n, (_, s) in servers.items()})
    return 0


def procs_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0])


if __name__ == "__main__":
    sys.exit(main())
