"""The routing phase (issue 22): three deployments of one model, one of them degraded, at concurrency 50.

For each strategy, time to first text event (p50, p99) and the error rate of streams through the real CLI,
next to the same load on one healthy deployment (the ideal) and on today's `ordered` fallbacks (the
degraded model first, two healthy fallbacks). Two degradations: a slow first token (`first_delay_ms`), and
30% of requests failing with 503 (`fail=3:503+cycle=10`). The deployments are one mock upstream process
told apart by the model name (their own `key`s). Run alone: `python bench/routing.py --seconds 10`;
`make bench` runs it as its `routing` phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procs  # noqa: E402
from stats import percentile  # noqa: E402

CONCURRENCY = 50
HEALTHY = "m+first_delay_ms=50+delay_ms=10"
DEGRADED = {"slow first token": "+first_delay_ms=3000", "30% errors": "+fail=3:503+cycle=10"}
ROUTED = ("weighted", "least_busy", "latency", "latency + hedge_after 0.5 s")
LIMITS = {"requests_per_minute": 1_000_000, "burst": 100_000, "streams_per_client": 100_000}


def deployment(name: str, mock: str, model: str) -> dict:
    return {"name": name, "adapter": "openai", "base_url": mock, "api_key": "${BENCH_KEY}", "model": f"{model}+key={name}"}


def configs(mock: str, degraded: str) -> dict[str, dict]:
    """The set-ups of one degradation: name -> config."""
    base = {"default_model": "chat", "limits": LIMITS, "resume": {"enabled": False},
            "logging": {"access_log": False}, "retry": {"attempts": 2, "backoff_initial": 0.05, "backoff_max": 0.2},
            "timeouts": {"first_token": 10, "idle": 10, "total": 60}}
    bad = HEALTHY.replace("+first_delay_ms=50", "") + degraded if "first_delay" in degraded else HEALTHY + degraded
    three = [deployment("a", mock, bad), deployment("b", mock, HEALTHY), deployment("c", mock, HEALTHY)]
    found = {"one healthy deployment (ideal)": {**base, "models": [{**deployment("a", mock, HEALTHY), "name": "chat"}]},
             "ordered fallbacks (today)": {**base, "models": [{**three[0], "name": "chat", "fallbacks": ["b", "c"]},
                                                              three[1], three[2]]}}
    for strategy in ROUTED:
        name, _, hedge = strategy.partition(" + hedge_after ")
        timeouts = {**base["timeouts"], "hedge_after": float(hedge.split()[0])} if hedge else base["timeouts"]
        found[strategy] = {**base, "timeouts": timeouts, "models": [{"name": "chat", "strategy": name, "deployments": three}]}
    return found


async def load(port: int, seconds: float) -> dict:
    """Streams at CONCURRENCY for `seconds`: TTFT of each that got text, and how many ended in an error."""
    ttfts: list[float] = []
    errors = total = 0
    stop = time.perf_counter() + seconds
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                  limits=httpx2.Limits(max_connections=None)) as client:

        async def worker() -> None:
            nonlocal errors, total
            while time.perf_counter() < stop:
                started, first, failed = time.perf_counter(), None, True
                try:
                    async with client.stream("POST", "/chat", json=body) as response:
                        async for line in response.aiter_lines():
                            if line.startswith("data:") and first is None and '"text"' in line:
                                first = time.perf_counter() - started
                            if line.startswith("data:") and '"terminate"' in line:
                                failed = json.loads(line[5:])["reason"] == "error"
                except httpx2.HTTPError:
                    failed = True
                total += 1
                errors += failed
                if first is not None and not failed:
                    ttfts.append(first)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return {"streams": total, "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99),
            "error_rate": errors / total if total else float("nan")}


def measure(seconds: float, workdir: Path, say=print) -> dict:
    """{degradation: {set-up: figures}}."""
    mock_port = procs.free_port()
    mock = procs.start("mock", [sys.executable, "-m", "llm_sse_proxy.mock_upstream", "--port", str(mock_port)], None)
    results: dict = {}
    try:
        assert procs.wait_listening(mock_port, 20), "the mock upstream did not start"
        for degradation, suffix in DEGRADED.items():
            results[degradation] = {}
            for setup, config in configs(f"http://127.0.0.1:{mock_port}/v1", suffix).items():
                results[degradation][setup] = figures = run_setup(config, seconds, workdir)
                say(f"{degradation:>16} | {setup:<32} | {figures}")
    finally:
        mock.stop()
    return results


def run_setup(config: dict, seconds: float, workdir: Path) -> dict:
    path, port = workdir / "routing.yaml", procs.free_port()
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path), "--port", str(port), "--log-level", "warning"]
    proxy = procs.start("proxy", argv, None, env={"BENCH_KEY": "sk-bench-routing"}, log=str(workdir / "proxy.log"))
    try:
        assert procs.wait_healthy(proxy, port, 30), (workdir / "proxy.log").read_text()
        return asyncio.run(load(port, seconds))
    finally:
        proxy.stop()


async def take_cost(redis_url: str | None, takes: int = 2000) -> dict:
    """Microseconds per take (the one call a stream waits for) and per release, sequential, three deployments."""
    from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute
    from llm_sse_proxy.proxy.state.redis import SharedRedis
    from llm_sse_proxy.proxy.state.routing import MemoryRouting, Wanted
    from llm_sse_proxy.proxy.state.routing_redis import RedisRouting

    chain = [ModelRoute("bench", tuple(Deployment(f"bench/{i}", str(i), None, rpm=10**9) for i in range(3)),  # type: ignore[arg-type]
                        "latency")]
    wanted = Wanted(chain, range(1), lease=60)
    found = {}
    shared = SharedRedis(redis_url, on_error=print) if redis_url else None
    states = {"memory": MemoryRouting()} | ({"redis": RedisRouting(shared)} if shared else {})
    for name, state in states.items():
        async with state:
            started = time.perf_counter()
            for _ in range(takes):
                taken = await state.take(wanted)
                state.release(chain[0].deployments[taken.index], taken, 10)  # type: ignore[union-attr]
                if name == "redis":
                    await state.drained()  # type: ignore[attr-defined]
            found[name] = round((time.perf_counter() - started) / takes * 1e6, 1)
    if shared is not None:
        await shared.aclose()
    return found


def table(results: dict) -> str:
    lines = []
    for degradation, setups in results.items():
        lines += [f"\n**Degraded deployment: {degradation}** (c={CONCURRENCY})\n",
                  "| set-up | streams | TTFT p50 (ms) | TTFT p99 (ms) | errors |", "|---|---|---|---|---|"]
        for setup, f in setups.items():
            lines.append(f"| {setup} | {f['streams']} | {f['ttft_p50'] * 1000:.0f} | {f['ttft_p99'] * 1000:.0f} | "
                         f"{f['error_rate']:.1%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="load per set-up")
    parser.add_argument("--take-cost", metavar="REDIS_URL", nargs="?", const="", default=None,
                        help="only time a take and release (memory, and Redis at REDIS_URL if given)")
    args = parser.parse_args()
    if args.take_cost is not None:
        print(f"load average: {procs.load_average()}; us per take+release:", asyncio.run(take_cost(args.take_cost or None)))
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        results = measure(args.seconds, Path(workdir))
    print(f"load average: {procs.load_average()}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
