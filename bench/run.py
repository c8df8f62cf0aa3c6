"""`make bench`: the same streams through each path, side by side, on loopback, bounded in time.

Paths: direct (the client reads the mock itself), floor (bench/floor.py), llm-sse-proxy (the real CLI,
adapter `openai`), the same CLI with each native adapter (llm-sse-proxy-anthropic, -gemini, -ollama: CPU
phase only), the same CLI with resumable streams off and on the Redis store (CPU phase only), the same app
under granian instead of uvicorn, and the LiteLLM proxy (pinned, in its own venv; skipped with a note when it
cannot be installed). Servers run on core 0; the mock upstream, the client, Redis and this script on core 1.
Phases `resume` and `replicas`: bench/resume_phase.py, bench/replicas.py (issue 10).
Peers (issue 27, bench/peers.py): TensorZero's gateway and Portkey's; with Portkey the whole run goes into a
private network namespace (bench/netns.py). The CPU phase measures three upstream shapes (bench/interleave.py):
the burst of bench/mock_upstream.py, paced streams, and bench/mock_aiohttp.py's write per event.
Phases `resume` and `replicas`: bench/resume_phase.py, bench/replicas.py (issue 10); `routing`: bench/routing.py
(issue 22, its table in results.json and printed as it runs).
Writes bench/results/results.json, results.md and PNG charts (~17 minutes before issue 10's rows, which add
about 2 minutes to `--quick`, a ~4 minute smoke run before them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import interleave  # noqa: E402
import meta  # noqa: E402
import netns  # noqa: E402
import paths  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402
import replicas  # noqa: E402
import resume_phase  # noqa: E402
import routing  # noqa: E402
from paths import PathSpec  # noqa: E402
from stats import percentile  # noqa: E402

SERVER_CORE, LOAD_CORE = 0, 1
CHUNKS, PACED_MS = 100, 20


@dataclass(frozen=True)
class Plan:
    cpu_levels: tuple[tuple[int, int, float], ...]  # (concurrency, max streams, max seconds)
    ttft_seconds: float
    capacity_seconds: float
    capacity_ladder: tuple[int, ...]
    bisections: int
    memory_levels: tuple[tuple[int, int], ...]  # (open streams, ms between chunks)
    workers_seconds: float
    startups: int  # cold starts per path (LiteLLM: one); the median is reported
    rounds: int  # interleaved rounds of the CPU phase (bench/interleave.py)
    one_chunk_seconds: float  # per round: 1-chunk streams at c=100, the per-request cost
    paced_levels: tuple[tuple[int, float], ...] = ()  # (concurrency, seconds): paced 50-chunk streams
    per_write_levels: tuple[tuple[int, int, float], ...] = ()  # as cpu_levels, from the aiohttp mock


FULL = Plan(((1, 300, 2), (10, 1500, 2.5), (100, 3000, 3)), 5, 4, (25, 50, 100, 200, 400, 800, 1600, 3200), 2,
            ((1000, 1000), (9900, 10_000)), 6, 3, 5, 2, ((10, 3), (100, 3)), ((1, 300, 2), (10, 1500, 2.5), (100, 3000, 3)))
QUICK = Plan(((1, 100, 1), (10, 400, 1), (100, 800, 1.5)), 2.5, 3, (50, 200, 800), 0, ((1000, 1000),), 3, 1, 3, 1,
             ((10, 2), (100, 2)), ((1, 100, 1), (10, 400, 1), (100, 800, 1.5)))
CPU_ONLY = (*paths.CPU_ONLY, peers.TENSORZERO, peers.PORTKEY)
# The native adapters' paths answer one question, CPU per chunk beside the OpenAI adapter's, in the
# interleaved CPU phase; start-up, TTFT, capacity and memory measure the server, which they share.
NO_SERVER_FIGURES = {"startup_s": None, "ttft_paced": None, "capacity": None, "memory": []}
HOLD_SECONDS = 60  # to open the slow streams and see each one's first event; what is open then counts
LITELLM_MAX_MEMORY = 1000  # ~1 ms of CPU per chunk: 10,000 streams at 1 chunk/s would need 10 cores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about four minutes, fewer points")
    parser.add_argument("--paths", default=",".join(["direct", "floor", "llm-sse-proxy", "llm-sse-proxy-v1",
                                                      *paths.NATIVE, *paths.RESUME, paths.UI, paths.MESSAGES, paths.TRACING,
                                                      "llm-sse-proxy-granian", "litellm", peers.TENSORZERO, peers.PORTKEY]),
                        help="comma-separated subset")
    parser.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 workers throughput run")
    parser.add_argument("--phases", default="cpu,ttft,capacity,memory,resume,replicas,routing",
                        help="comma-separated subset, for work on one")
    parser.add_argument("--out", default=str(paths.BENCH / "results"))
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the CPU phase (default: 5, --quick 3)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    out = Path(args.out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    wanted = args.paths.split(",")
    notes: list[str] = []
    if peers.PORTKEY in wanted and not netns.inside():
        if problem := netns.why_not() or peers.install_portkey(out / "raw" / "portkey-install.log"):
            notes.append(f"Portkey left out: {problem}; it listens on every interface, so it runs only in a private "
                         "network namespace")
            say(notes[-1])
            wanted.remove(peers.PORTKEY)
        else:
            if "litellm" in wanted:
                paths.install_litellm(out / "raw" / "litellm-install.log")  # the namespace has no network
            say("re-running inside a private network namespace (Portkey listens on every interface)")
            return netns.rerun_inside([str(Path(__file__).resolve()), *sys.argv[1:]])
    if netns.inside():
        netns.loopback_up()
        notes.append("ran in a private network namespace (unshare -n), its loopback only: Portkey listens on every interface")
    prepare_machine()
    started = time.time()
    results: dict = {"meta": meta.describe(args.quick), "paths": {}, "notes": notes}
    results["meta"]["command"] = " ".join(["python bench/run.py", *sys.argv[1:]])
    phases = args.phases.split(",")
    with_redis = bool({"resume", "replicas"} & set(phases)) or ("cpu" in phases and paths.RESUME[1] in wanted)
    with (tempfile.TemporaryDirectory(prefix="bench-") as workdir,
          resume_phase.redis_for(with_redis, Path(workdir), results["notes"]) as redis,
          otlp_for(paths.TRACING in wanted and "cpu" in phases) as trace_endpoint):
        redis_url = redis.url if redis else None
        mock_port, per_write_port = procs.free_port(), procs.free_port()
        mock = procs.start("mock", [sys.executable, str(paths.BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                           LOAD_CORE, log=str(out / "raw" / "mock.log"))
        per_write_mock = procs.start("mock-aiohttp", [sys.executable, str(paths.BENCH / "mock_aiohttp.py"), "--port",
                                                      str(per_write_port)], LOAD_CORE, log=str(out / "raw" / "mock-aiohttp.log"))
        try:
            if not (procs.wait_listening(mock_port, 10) and procs.wait_listening(per_write_port, 10)):
                raise SystemExit("a mock upstream did not start; see bench/results/raw/mock*.log")
            found = specs(wanted, (mock_port, per_write_port), Path(workdir), out, results["notes"], redis_url,
                          trace_endpoint)
            left: dict[str, dict] = {}
            runs = cpu_rounds(found, (mock, per_write_mock), mock_port, plan, out, left) if "cpu" in phases else {}
            for spec in found:
                say(f"== {spec.name}")
                results["paths"][spec.name] = (dict(NO_SERVER_FIGURES) if spec.name in CPU_ONLY
                                               else measure_path(spec, mock, plan, out, phases))
                results["paths"][spec.name].update(cpu_summary(runs.get(spec.name, {})))
                if spec.name in left:
                    results["paths"][spec.name]["client_left"] = left[spec.name]
            results["ratios"] = cpu_ratios(runs)
            if "resume" in phases:
                say("== resume: latency and memory")
                results["resume"] = resume_phase.measure(mock_port, Path(workdir), redis, args.quick, SERVER_CORE, out, say)
            if "replicas" in phases:
                say("== replicas: 2 workers, 2 replicas")
                results["replicas"] = replicas.measure(mock_port, Path(workdir), redis, plan.workers_seconds,
                                                       run_client, out, say)
            if "routing" in phases:
                say("== routing: three deployments, one degraded, c=50")
                results["routing"] = routing.measure(4 if args.quick else 10, Path(workdir), say)
            if not args.no_workers and "llm-sse-proxy" in wanted:
                results["workers"] = measure_workers(mock_port, mock, Path(workdir), plan, out)
            results["meta"]["mock_cpu_per_chunk_us"] = results["paths"].get("direct", {}).get("cpu", [{}])[-1].get(
                "server_cpu_per_chunk_us")
        finally:
            mock.stop()
            per_write_mock.stop()
    results["meta"]["load_after"] = procs.load_average()
    results["meta"]["seconds"] = round(time.time() - started)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    import report

    report.write(results, out)
    say(f"done in {results['meta']['seconds']} s: {out / 'results.md'}")
    return 0


@contextmanager
def otlp_for(wanted: bool) -> Iterator[str | None]:
    """A loopback OTLP/HTTP receiver for the tracing path (tests/otlp_receiver.py), on the load core; its URL."""
    if not wanted:
        yield None
        return
    sys.path.insert(1, str(paths.BENCH.parent))
    from tests.otlp_receiver import otlp_receiver

    with otlp_receiver() as receiver:
        yield receiver.url


def prepare_machine() -> None:
    os.sched_setaffinity(0, {LOAD_CORE})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it: 10,000 streams need it
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the servers and the load")


def specs(wanted: list[str], mocks: tuple[int, int], workdir: Path, out: Path, notes: list[str],
          redis_url: str | None, trace_endpoint: str | None = None) -> list[PathSpec]:
    """The paths asked for; `mocks`: the ports of mock_upstream.py and of mock_aiohttp.py (the per-write shape)."""
    mock_port, per_write = mocks
    found = []
    for name in wanted:
        if name == "direct":
            found.append(paths.direct(mock_port))
        elif name == "floor":
            found.append(paths.floor(mock_port, per_write))
        elif name == "llm-sse-proxy":
            found.append(paths.proxy(mock_port, workdir, per_write_port=per_write))
        elif name in paths.NATIVE:
            found.append(paths.proxy(mock_port, workdir, name=name, adapter=name.removeprefix("llm-sse-proxy-")))
        elif name == "llm-sse-proxy-v1":
            found.append(paths.proxy_openai(mock_port, workdir, per_write_port=per_write))
        elif name == paths.UI:
            found.append(paths.proxy_ui(mock_port, workdir))
        elif name == paths.MESSAGES:
            found.append(paths.proxy_messages(mock_port, workdir))
        elif name == "llm-sse-proxy-resume-off":
            found.append(paths.resume_off(mock_port, workdir, per_write))
        elif name == "llm-sse-proxy-redis" and redis_url:
            found.append(paths.proxy_redis(mock_port, workdir, redis_url, per_write_port=per_write))
        elif name == paths.TRACING and trace_endpoint:
            found.append(paths.tracing(mock_port, workdir, trace_endpoint))
        elif name == "llm-sse-proxy-granian":
            found.append(paths.granian(mock_port, workdir, per_write))
        elif name == "litellm":
            say(f"installing litellm[proxy]=={paths.LITELLM_VERSION} into bench/.litellm-venv (once)")
            if problem := paths.install_litellm(out / "raw" / "litellm-install.log"):
                notes.append(f"LiteLLM left out: {problem}")
                say(notes[-1])
            else:
                found.append(paths.litellm(mock_port, workdir, per_write))
        elif name == peers.TENSORZERO:
            if problem := peers.tensorzero_problem():
                notes.append(f"TensorZero left out: {problem}")
                say(notes[-1])
            else:
                found.append(peers.tensorzero(mock_port, workdir, per_write))
        elif name == peers.PORTKEY:  # only here inside the private namespace (main)
            found.append(peers.portkey(mock_port, per_write))
    return found


def measure_path(spec: PathSpec, mock: procs.Proc, plan: Plan, out: Path, phases: list[str]) -> dict:
    result: dict = {"startup_s": None, "ttft_paced": None, "capacity": None, "memory": []}
    server = mock
    if spec.argv:
        timeout = 60 if spec.name == "litellm" else 20
        starts = []
        for _ in range(0 if spec.name == "litellm" else plan.startups - 1):  # cold starts, then the one we keep
            trial = procs.start(spec.name, spec.argv, SERVER_CORE, spec.env, log=str(out / "raw" / f"{spec.name}.log"))
            starts.append(procs.wait_first_event(trial, spec.port, spec.request("n100-i0"), timeout))
            trial.stop()
        server = procs.start(spec.name, spec.argv, SERVER_CORE, spec.env, log=str(out / "raw" / f"{spec.name}.log"))
        starts.append(procs.wait_first_event(server, spec.port, spec.request("n100-i0"), timeout))
        measured = sorted(s for s in starts if s is not None)
        result["startup_s"] = measured[len(measured) // 2] if len(measured) == len(starts) else None
        result["startup_all_s"] = starts
        say(f"start-up to first event: {starts}")
        if result["startup_s"] is None:
            server.stop()
            result["error"] = "did not serve a stream in time; see bench/results/raw/"
            return result
    try:
        heavy = spec.name == "litellm"
        warm_up(spec)
        if "ttft" in phases:
            result["ttft_paced"] = ttft_paced(spec, server, mock, plan)
        if "capacity" in phases:
            result["capacity"] = capacity(spec, server, mock, plan)
        if spec.argv and "memory" in phases:
            for open_streams, interval_ms in plan.memory_levels:
                if heavy and open_streams > LITELLM_MAX_MEMORY:
                    result["memory"].append({"streams": open_streams, "skipped": "CPU-bound long before this"})
                    continue
                result["memory"].append(memory_point(spec, server, open_streams, interval_ms))
    finally:
        if server is not mock:
            server.stop()
    return result


def warm_up(spec: PathSpec) -> None:
    run_client(spec, "n100-i0", CHUNKS, concurrency=10, streams=50 if spec.name == "litellm" else 300, duration=5)


def cpu_rounds(specs: list[PathSpec], mocks: tuple[procs.Proc, procs.Proc], mock_port: int, plan: Plan, out: Path,
               left: dict[str, dict]) -> dict[str, dict]:
    """The CPU phase, every path in turn, round after round (bench/interleave.py says why); then, servers still
    up and idle, whether each path closes its upstream when its client leaves (into `left`)."""
    mock, per_write_mock = mocks

    def measure(spec: PathSpec, server: procs.Proc, level: interleave.Level) -> dict:
        upstream = per_write_mock if level.shape == interleave.PER_WRITE else mock
        return cpu_point(spec, server, upstream, level.concurrency, level.streams, level.seconds, chunks=level.chunks,
                         model=level.model, stagger=level.stagger)

    def client_leaves(spec: PathSpec, server: procs.Proc) -> None:
        if spec.argv:
            left[spec.name] = peers.closes_upstream(spec, mock_port)
            say(f"  {spec.name}: upstream closed after the client left: {left[spec.name]}")

    levels = interleave.levels(plan.cpu_levels, plan.one_chunk_seconds, plan.paced_levels, plan.per_write_levels)
    return interleave.rounds(specs, mock, levels, plan.rounds, out, measure, warm_up, say, client_leaves)


def _figure(level_key: str) -> str:
    return "server_cpu_per_stream_ms" if level_key == "one-chunk" else "server_cpu_per_chunk_us"


def cpu_summary(runs: dict[str, list[dict]]) -> dict:
    """A path's median round per level: `cpu` (burst 100-chunk levels), `cpu_one_chunk`, and `cpu_shapes` (the
    paced and per-write levels, by key), every round kept."""
    medians = {key: interleave.median_point(points, _figure(key)) for key, points in runs.items() if points}
    return {"cpu": [p for key, p in medians.items() if key in ("c1", "c10", "c100")],
            "cpu_one_chunk": medians.get("one-chunk"),
            "cpu_shapes": {key: p for key, p in medians.items() if key not in ("c1", "c10", "c100", "one-chunk")}}


def cpu_ratios(runs: dict[str, dict]) -> dict:
    """The headline: the proxy's CPU over the floor's, and LiteLLM's over the proxy's, round by round; and
    every path's over the floor's (`<path>/floor`), the peers' among them."""
    return {"proxy/floor": interleave.ratios(runs, "llm-sse-proxy", "floor", _figure),
            "litellm/proxy": interleave.ratios(runs, "litellm", "llm-sse-proxy", _figure),
            "granian/uvicorn": interleave.ratios(runs, "llm-sse-proxy-granian", "llm-sse-proxy", _figure),
            **{f"{name}/openai": interleave.ratios(runs, name, "llm-sse-proxy", _figure) for name in paths.NATIVE},
            "llm-sse-proxy-v1/openai": interleave.ratios(runs, "llm-sse-proxy-v1", "llm-sse-proxy", _figure),
            "llm-sse-proxy-ui/openai": interleave.ratios(runs, paths.UI, "llm-sse-proxy", _figure),
            "llm-sse-proxy-messages/openai": interleave.ratios(runs, paths.MESSAGES, "llm-sse-proxy", _figure),
            "resume-memory/off": interleave.ratios(runs, "llm-sse-proxy", paths.RESUME[0], _figure),
            "resume-redis/off": interleave.ratios(runs, paths.RESUME[1], paths.RESUME[0], _figure),
            "tracing-on/off": interleave.ratios(runs, paths.TRACING, "llm-sse-proxy", _figure),
            **{f"{name}/floor": interleave.ratios(runs, name, "floor", _figure)
               for name in runs if name not in ("floor", "direct")}}


def run_client(spec: PathSpec, model: str, chunks: int, *, concurrency: int, streams: int = 1_000_000,
               duration: float, stagger: float = 0.0, full_every: int = 10) -> dict:
    argv = ["taskset", "-c", str(LOAD_CORE), sys.executable, str(paths.BENCH / "load_client.py"), "--url", spec.url,
            "--body", spec.body(model), "--format", spec.format, "--chunks", str(chunks),
            "--concurrency", str(concurrency), "--streams", str(streams), "--duration", str(duration),
            "--stagger", str(stagger), "--full-every", str(full_every)]
    for header in spec.headers_for(model):
        argv += ["--header", header]
    with tempfile.NamedTemporaryFile(prefix="bench-client-", suffix=".json") as result:
        done = subprocess.run([*argv, "--out", result.name], capture_output=True, text=True, timeout=duration + 180)
        if done.returncode != 0:
            raise RuntimeError(f"load client failed: {done.stderr[-2000:]}")
        return json.load(open(result.name))


def cpu_point(spec: PathSpec, server: procs.Proc, mock: procs.Proc, concurrency: int, streams: int,
              seconds: float, chunks: int = CHUNKS, model: str | None = None, stagger: float = 0.0) -> dict:
    """Streams of `chunks` chunks (zero-delay unless `model` says otherwise): the server's CPU per chunk and per
    stream, and where the events were batched: the server's read and write system calls per chunk, and the
    events per read of the client."""
    load = procs.load_average()
    server_cpu, mock_cpu, calls = server.cpu(), mock.cpu(), server.syscalls()
    r = run_client(spec, model or f"n{chunks}-i0", chunks, concurrency=concurrency, streams=streams, duration=seconds,
                   stagger=stagger)
    server_cpu, mock_cpu = server.cpu() - server_cpu, mock.cpu() - mock_cpu
    reads, writes = (after - before for after, before in zip(server.syscalls(), calls))
    relayed = max(r["ok"] * chunks, 1)
    point = {"concurrency": concurrency, "chunks": chunks, "model": model or f"n{chunks}-i0", "ok": r["ok"], "bad": r["bad"],
             "errors": r["errors"], "wall_s": r["wall"],
             "streams_per_s": r["ok"] / r["wall"], "server_cpu_s": server_cpu,
             "server_cpu_per_chunk_us": server_cpu / relayed * 1e6, "server_cpu_per_stream_ms": server_cpu / max(r["ok"], 1) * 1e3,
             "server_reads_per_chunk": reads / relayed, "server_writes_per_chunk": writes / relayed,
             "client_events_per_read": r["events"] / max(r.get("reads", 0), 1),
             "client_cpu_s": r["cpu"], "mock_cpu_s": mock_cpu, "load_core1": (r["cpu"] + mock_cpu) / r["wall"],
             "ttft_p50_ms": percentile(r["ttft"], 50) * 1e3, "ttft_p99_ms": percentile(r["ttft"], 99) * 1e3,
             "loadavg": load}
    say(f"  {spec.name} c={concurrency} {point['model']}: {point['ok']} ok {point['bad']} bad, {point['streams_per_s']:.0f} streams/s, "
        f"{point['server_cpu_per_chunk_us']:.1f} us/chunk, ttft p50 {point['ttft_p50_ms']:.2f} ms, "
        f"syscalls/chunk r {point['server_reads_per_chunk']:.2f} w {point['server_writes_per_chunk']:.2f}, "
        f"client events/read {point['client_events_per_read']:.1f}, core-1 load {point['load_core1']:.2f}")
    return point


def ttft_paced(spec: PathSpec, server: procs.Proc, mock: procs.Proc, plan: Plan) -> dict:
    """TTFT of 100 concurrent paced streams (50 chunks/s): the proxy's latency under a realistic load."""
    r = run_client(spec, "n50-i20", 50, concurrency=100, duration=plan.ttft_seconds, stagger=1.0)
    point = {"concurrency": 100, "ok": r["ok"], "bad": r["bad"], "errors": r["errors"],
             "ttft_p50_ms": percentile(r["ttft"], 50) * 1e3, "ttft_p99_ms": percentile(r["ttft"], 99) * 1e3,
             "loadavg": procs.load_average()}
    say(f"  paced c=100: ttft p50 {point['ttft_p50_ms']:.2f} ms p99 {point['ttft_p99_ms']:.2f} ms ({r['ok']} ok)")
    return point


def capacity(spec: PathSpec, server: procs.Proc, mock: procs.Proc, plan: Plan) -> dict:
    """Step up paced streams until the p99 gap between chunks exceeds the pace by 10 ms or a stream breaks."""
    points: list[dict] = []
    ladder = list(plan.capacity_ladder)
    if spec.name == "litellm":
        ladder = [5, 10, 20, 40, 80, 160]
    last_pass, first_fail = 0, None
    for concurrency in ladder:
        point = paced_point(spec, server, mock, concurrency, plan.capacity_seconds)
        points.append(point)
        if not point["pass"]:
            first_fail = concurrency
            break
        last_pass = concurrency
    for _ in range(plan.bisections if first_fail else 0):
        middle = (last_pass + first_fail) // 2
        if middle - last_pass < max(last_pass // 10, 5):
            break
        point = paced_point(spec, server, mock, middle, plan.capacity_seconds)
        points.append(point)
        last_pass, first_fail = (middle, first_fail) if point["pass"] else (last_pass, middle)
    return {"streams": last_pass, "limit_reached": first_fail is not None, "points": sorted(points, key=lambda p: p["concurrency"])}


def paced_point(spec: PathSpec, server: procs.Proc, mock: procs.Proc, concurrency: int, seconds: float) -> dict:
    server_cpu, mock_cpu = server.cpu(), mock.cpu()
    r = run_client(spec, "n100-i20", CHUNKS, concurrency=concurrency, duration=seconds, stagger=1.0, full_every=50)
    server_cpu, mock_cpu = server.cpu() - server_cpu, mock.cpu() - mock_cpu
    excess = (percentile(r["gaps"], 99) - PACED_MS / 1000) * 1e3
    point = {"concurrency": concurrency, "ok": r["ok"], "bad": r["bad"], "errors": r["errors"],
             "gap_p50_ms": percentile(r["gaps"], 50) * 1e3, "gap_p99_ms": percentile(r["gaps"], 99) * 1e3,
             "added_gap_p99_ms": excess, "server_core_load": server_cpu / r["wall"],
             "load_core1": (r["cpu"] + mock_cpu) / r["wall"], "loadavg": procs.load_average()}
    point["pass"] = r["bad"] == 0 and r["ok"] > 0 and excess < 10
    say(f"  paced c={concurrency}: p99 gap +{excess:.1f} ms, {r['ok']} ok {r['bad']} bad, "
        f"core-0 {point['server_core_load']:.2f} core-1 {point['load_core1']:.2f} -> {'pass' if point['pass'] else 'FAIL'}")
    return point


def memory_point(spec: PathSpec, server: procs.Proc, open_streams: int, interval_ms: int) -> dict:
    """RSS with `open_streams` slow streams open at once, as bytes per open stream.

    10,000 streams at 1 chunk/s are 10,000 chunks/s, more than one core relays in Python (see the
    capacity figures), so that level uses 1 chunk per 10 s: the same chunk rate as 1,000 at 1/s.
    """
    time.sleep(1)
    idle = server.rss()
    chunks = 120 if interval_ms <= 1000 else 30
    argv = ["taskset", "-c", str(LOAD_CORE), sys.executable, str(paths.BENCH / "load_client.py"), "--url", spec.url,
            "--body", spec.body(f"n{chunks}-i{interval_ms}"), "--format", spec.format,
            "--chunks", str(chunks), "--mode", "hold", "--concurrency", str(open_streams),
            "--duration", str(HOLD_SECONDS), "--stagger", str(open_streams / 1500)]
    for header in spec.headers:
        argv += ["--header", header]
    client = subprocess.Popen([*argv, "--out", os.devnull], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = client.stdout.readline().split()  # type: ignore[union-attr]  # READY comes within HOLD_SECONDS
        opened, failed = (int(line[1]), int(line[2])) if line[:1] == ["READY"] else (0, open_streams)
        loaded = server.rss()
        client.communicate("\n", timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    time.sleep(2)  # let the server tear the streams down before the next phase
    point = {"streams": open_streams, "chunk_interval_s": interval_ms / 1000, "open": opened, "failed": failed, "rss_idle_mb": idle / 2**20,
             "rss_open_mb": loaded / 2**20, "bytes_per_stream": (loaded - idle) / max(opened, 1)}
    say(f"  memory {open_streams}: {opened} open, {failed} failed, RSS {point['rss_open_mb']:.0f} MiB, "
        f"{point['bytes_per_stream'] / 1024:.1f} KiB/stream")
    return point


def measure_workers(mock_port: int, mock: procs.Proc, workdir: Path, plan: Plan, out: Path) -> dict:
    """Throughput with 1 and 2 workers, not pinned: the whole machine, mock and client included."""
    found: dict = {}
    for workers in (1, 2):
        spec = paths.proxy(mock_port, workdir, workers=workers, name=f"llm-sse-proxy-w{workers}")
        server = procs.start(spec.name, spec.argv, procs.ALL_CORES, log=str(out / "raw" / f"{spec.name}.log"))
        try:
            if procs.wait_first_event(server, spec.port, spec.request("n100-i0"), 30) is None:
                found[str(workers)] = {"error": "did not start"}
                continue
            run_client(spec, "n100-i0", CHUNKS, concurrency=10, streams=300, duration=3)
            found[str(workers)] = cpu_point(spec, server, mock, 100, 100_000, plan.workers_seconds)
            found[str(workers)]["paced"] = [paced_point(spec, server, mock, c, plan.capacity_seconds) for c in (100, 200)]
        finally:
            server.stop()
    return found


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
