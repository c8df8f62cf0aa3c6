"""`make soak`: about a thousand streams through a real proxy process, with random client disconnects and
random upstream faults, then an overload past the global stream limit. Loopback only, bounded in time.

    python -m tests.soak [--streams 1000] [--seconds 60] [--concurrency 24] [--seed N]

Checks, and prints in a one-screen report:
- every completed stream is intact: its text in order (the full echo, or exactly the prefix its fault
  allows), ids 1..n, exactly one terminate, last, with the expected reason;
- every upstream connection is closed, the abandoned streams' included, and how soon after the client left;
- the proxy's asyncio tasks, file descriptors and RSS return to their warmed-up baseline;
- past `limits.max_streams`, the excess gets 503 with Retry-After at once while the accepted streams finish;
- one access-log line per accepted stream, and /metrics agrees.
The mock upstream runs in this process (so its Recorder is readable); the proxy is a subprocess, measured
through its `/debug/runtime` endpoint, which only this config turns on.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import yaml

from llm_sse_proxy.mock_upstream import Recorder, create_mock_upstream_app
from tests.conftest import serve
from tests.sse_parse import parse_stream
from tests.test_concurrency_and_shutdown import free_port, wait_healthy

K = 4  # content chunks before a fault fires; the mock sends 5 code points per chunk
WORDS = "server sent events stream tokens browser proxy upstream chunk retry fallback ping".split()
# model name -> (weight, upstream model suffix, expected (reason, error type), text kept)
FAULTS: dict[str, tuple[int, str, tuple[str, str | None], bool]] = {
    "ok": (50, "", ("stop", None), True),
    "fallback": (10, "+fail=1000000000:503", ("stop", None), True),
    "drop": (8, f"+drop_after={K}", ("error", "truncated"), False),
    "close": (8, f"+close_after={K}", ("error", "truncated"), False),
    "malformed": (8, f"+malformed_after={K}", ("stop", None), True),  # one bad chunk: skipped (faults.on_malformed_chunk)
    "midstream": (8, f"+error_after={K}", ("error", "upstream_unavailable"), False),
    "stall": (8, f"+stall_after={K}", ("error", "timeout"), False),
}


@dataclass
class Options:
    streams: int = 1000
    seconds: float = 60.0
    concurrency: int = 24
    delay_ms: int = 20
    abandon: float = 0.2
    max_streams: int = 40
    overload_extra: int = 40
    seed: int = 0


@dataclass
class Report:
    started: int = 0
    completed: int = 0
    abandoned: int = 0
    broken: list[str] = field(default_factory=list)
    by_model: dict[str, int] = field(default_factory=dict)
    upstream_attempts: int = 0
    upstream_open: int = 0
    abandoned_upstream: int = 0
    close_lags: list[float] = field(default_factory=list)
    baseline: dict[str, int] = field(default_factory=dict)
    final: dict[str, int] = field(default_factory=dict)
    overload_refused: list[tuple[int, float]] = field(default_factory=list)
    overload_accepted_intact: int = 0
    overload_accepted: int = 0
    access_lines: int = 0
    metrics_streams: float = 0.0
    probes: int = 0  # the streams runtime() sends
    least: int = 0  # streams the proxy must have served: the ones whose response began
    most: int = 0  # and at most: every stream request sent
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def proxy_config(upstream: str, port: int, opts: Options) -> dict[str, Any]:
    models = [{"name": name, "adapter": "openai", "base_url": f"{upstream}/v1", "api_key": "soak-key",
               "model": f"{name}+delay_ms={opts.delay_ms}{suffix}", **({"fallbacks": ["ok"]} if name == "fallback" else {})}
              for name, (_, suffix, _, _) in FAULTS.items()]
    models.append({"name": "slow", "adapter": "openai", "base_url": f"{upstream}/v1", "api_key": "soak-key",
                   "model": "slow+delay_ms=200"})
    return {
        "server": {"port": port, "debug_endpoints": True, "send_timeout": 5, "shutdown_grace": 1},
        "default_model": "ok",
        "models": models,
        "retry": {"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.05},
        "timeouts": {"connect": 2, "first_token": 5, "idle": 1, "total": 30},
        "limits": {"requests_per_minute": 1e9, "burst": 10**9, "streams_per_client": 10**6,
                   "max_streams": opts.max_streams},
    }


class Soak:
    def __init__(self, opts: Options, url: str, recorder: Recorder) -> None:
        self.opts, self.url, self.recorder = opts, url, recorder
        self.rng = random.Random(opts.seed)
        self.report = Report()
        self.left_at: dict[str, float] = {}  # the abandoned streams' texts, and when their client left

    async def runtime(self) -> dict[str, int]:
        """The proxy's tasks, fds and RSS, idle, measured the same way before and after the soak.

        Each model has its own upstream pool, which keeps idle connections until its next request
        sweeps out those the upstream closed. So: let the mock upstream drop its idle connections
        (after 1 s), send one stream through every model (each pool sweeps), then measure.
        """
        await anyio.sleep(1.5)
        async with httpx2.AsyncClient(base_url=self.url, timeout=10) as client:
            async with anyio.create_task_group() as tasks:
                for name in FAULTS:
                    tasks.start_soon(self.probe, client, name)
            await anyio.sleep(0.3)
            return (await client.get("/debug/runtime")).json()

    async def probe(self, client: httpx2.AsyncClient, name: str) -> None:
        async with client.stream("POST", "/chat", json=body("probe", name)) as response:
            await response.aread()
        self.report.probes += 1

    async def warm_up(self) -> None:
        """Streams through every model first, so the baseline is a warmed-up process (not counted)."""
        await self.run_plan([(-1 - i, list(FAULTS)[i % len(FAULTS)], False) for i in range(50)], math.inf)

    async def main_phase(self) -> None:
        names, weights = list(FAULTS), [w for w, *_ in FAULTS.values()]
        plan = [(i, self.rng.choices(names, weights)[0], self.rng.random() < self.opts.abandon)
                for i in range(self.opts.streams)]
        await self.run_plan(plan, time.monotonic() + self.opts.seconds)

    async def run_plan(self, plan: list[tuple[int, str, bool]], deadline: float) -> None:
        limiter = anyio.Semaphore(self.opts.concurrency)
        async with client_for(self.url) as client, anyio.create_task_group() as tasks:
            for i, name, abandon in plan:
                await limiter.acquire()
                if time.monotonic() > deadline:
                    limiter.release()
                    break
                tasks.start_soon(self.limited, limiter, client, i, name, abandon)

    async def limited(self, limiter: anyio.Semaphore, client: httpx2.AsyncClient, i: int, name: str,
                      abandon: bool) -> None:
        try:
            await self.one(client, i, name, abandon)
        finally:
            limiter.release()

    async def one(self, client: httpx2.AsyncClient, i: int, name: str, abandon: bool) -> None:
        text = f"<{i}> " + " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(20, 40)))
        self.report.most += 1
        if i >= 0:
            self.report.started += 1
            self.report.by_model[name] = self.report.by_model.get(name, 0) + 1
        if abandon:
            return await self.abandon(client, text, name)
        async with client.stream("POST", "/chat", json=body(text, name)) as response:
            self.report.least += 1
            raw = await response.aread()
        problem = check_stream(response.status_code, raw, text, name)
        if problem and i >= 0:
            self.report.broken.append(f"stream {i} ({name}): {problem}")
        self.report.completed += i >= 0

    async def abandon(self, client: httpx2.AsyncClient, text: str, name: str) -> None:
        self.report.abandoned += 1
        after_events = self.rng.randint(0, 8)
        with anyio.move_on_after(self.rng.uniform(0.0, 0.6)):
            async with client.stream("POST", "/chat", json=body(text, name)) as response:
                self.report.least += 1
                seen = 0
                async for chunk in response.aiter_bytes():
                    seen += chunk.count(b"data:")
                    if seen >= after_events:
                        break
        self.left_at[text] = time.monotonic()

    async def check_upstream(self) -> None:
        """Every upstream attempt closed, and how soon after its client left, for the abandoned ones."""
        with anyio.move_on_after(10):
            while any(a.closed_at is None for a in self.recorder.attempts):
                await anyio.sleep(0.05)
        r = self.report
        r.upstream_attempts = len(self.recorder.attempts)
        r.upstream_open = sum(a.closed_at is None for a in self.recorder.attempts)
        reached = set()
        for attempt in self.recorder.attempts:
            content = attempt.body.get("messages", [{}])[-1].get("content", "").removeprefix("echo:")
            left = self.left_at.get(content)
            if left is not None and attempt.closed_at is not None:
                reached.add(content)
                r.close_lags.append(max(0.0, attempt.closed_at - left))
        r.abandoned_upstream = len(reached)  # the others left before the proxy asked the upstream

    async def overload(self) -> None:
        """Fill every stream slot with slow streams, then knock: the excess must be refused at once."""
        r, limit = self.report, self.opts.max_streams
        opened = anyio.Event()
        accepted = 0

        async def slow(client: httpx2.AsyncClient, i: int) -> None:
            nonlocal accepted
            text = f"<slow {i}> " + " ".join(WORDS[:6])
            async with client.stream("POST", "/chat", json=body(text, "slow")) as response:
                accepted += response.status_code == 200
                if accepted == limit:
                    opened.set()
                raw = await response.aread()
            r.overload_accepted += 1
            r.overload_accepted_intact += check_stream(response.status_code, raw, text, "ok") is None

        async def knock(client: httpx2.AsyncClient) -> None:
            began = time.monotonic()
            response = await client.post("/chat", json=body("knock", "slow"))
            ok = response.status_code == 503 and response.headers.get("retry-after") == "1"
            r.overload_refused.append((response.status_code if ok else -response.status_code, time.monotonic() - began))

        async with client_for(self.url) as client, anyio.create_task_group() as tasks:
            for i in range(limit):
                tasks.start_soon(slow, client, i)
            with anyio.fail_after(20):
                await opened.wait()
            for _ in range(self.opts.overload_extra):  # one at a time: each figure is one refusal's latency
                await knock(client)


def client_for(url: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=url, timeout=30, limits=httpx2.Limits(max_connections=None))


def body(text: str, model: str = "ok") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "echo:" + text}]}


def check_stream(status: int, raw: bytes, text: str, name: str) -> str | None:
    """None when the stream is intact for its fault; else what is wrong."""
    if status != 200:
        return f"status {status}"
    parsed = parse_stream(raw)
    items = [json.loads(e.data) for e in parsed.events]
    if [i for i, p in enumerate(items) if p.get("action") == "terminate"] != [len(items) - 1] or parsed.leftover:
        return "not exactly one terminate, last"
    sid = parsed.events[0].id.rpartition(":")[0] if parsed.events else ""
    prefix = f"{sid}:" if sid else ""  # resumable streams (the default) number events <stream id>:<seq>
    if [e.id for e in parsed.events] != [f"{prefix}{n}" for n in range(1, len(items) + 1)]:
        return "ids out of order"
    _, _, (reason, error_type), whole = FAULTS[name]
    got = "".join(p.get("text", "") for p in items[:-1])
    want = text if whole else text[: 5 * K]
    end = items[-1]
    if got != want:
        return f"text differs: {got[:40]!r}… vs {want[:40]!r}…"
    if end["reason"] != reason or (end.get("error") or {}).get("type") != error_type:
        return f"terminate {end}"
    return None


async def run(opts: Options) -> Report:
    began = time.monotonic()
    recorder = Recorder()
    async with serve(create_mock_upstream_app(recorder), timeout_keep_alive=1) as upstream:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            path = Path(tmp) / "soak.yaml"
            path.write_text(yaml.safe_dump(proxy_config(upstream, port, opts)))
            log_path = Path(tmp) / "proxy.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.proxy", "--config", str(path),
                                            "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
                try:
                    soak = await drive(opts, f"http://127.0.0.1:{port}", recorder, port)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=15)
            soak.report.access_lines = log_path.read_text(errors="replace").count('{"event":"stream"')
    soak.report.seconds = time.monotonic() - began
    judge(soak.report)
    return soak.report


async def drive(opts: Options, url: str, recorder: Recorder, port: int) -> Soak:
    await wait_healthy(port)
    soak = Soak(opts, url, recorder)
    await soak.warm_up()
    soak.report.baseline = await soak.runtime()
    await soak.main_phase()
    await soak.check_upstream()
    soak.report.final = await soak.runtime()
    await soak.overload()
    async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
        soak.report.metrics_streams = streams_in_metrics((await client.get("/metrics")).text)
    r = soak.report
    r.least += r.probes + r.overload_accepted
    r.most += r.probes + r.overload_accepted
    return soak


def streams_in_metrics(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("llm_proxy_streams_total{"))


def judge(r: Report) -> None:
    base, final = r.baseline, r.final
    checks = [
        (not r.broken, f"{len(r.broken)} completed streams broken"),
        (r.upstream_open == 0, f"{r.upstream_open} upstream connections still open"),
        (final.get("tasks", 0) <= base.get("tasks", 0) + 2, "asyncio tasks grew"),
        (final.get("fds", 0) <= base.get("fds", 0) + 2, "file descriptors grew"),
        (final.get("rss_bytes", 0) <= base.get("rss_bytes", 0) * 1.25 + (16 << 20), "RSS did not come back"),
        (all(status == 503 for status, _ in r.overload_refused), "some excess requests were not refused with 503"),
        (r.overload_accepted_intact == r.overload_accepted, "an accepted stream broke under overload"),
        (r.least <= r.access_lines <= r.most, f"{r.access_lines} access lines for {r.least}..{r.most} streams"),
        (r.metrics_streams == r.access_lines, f"/metrics counted {r.metrics_streams} streams"),
    ]
    r.problems = [why for ok, why in checks if not ok]


def render(r: Report, opts: Options) -> str:
    lags = sorted(r.close_lags) or [0.0]
    waits = sorted(t for _, t in r.overload_refused) or [0.0]
    mib = 1 << 20
    lines = [
        f"soak: {r.started} streams in {r.seconds:.1f} s (concurrency {opts.concurrency}, seed {opts.seed})",
        "  mix: " + ", ".join(f"{k} {v}" for k, v in sorted(r.by_model.items())),
        f"  completed {r.completed}, broken {len(r.broken)}; abandoned by the client {r.abandoned}",
        f"  upstream: {r.upstream_attempts} attempts, {r.upstream_open} left open; {r.abandoned_upstream} abandoned "
        f"streams had reached it: their {len(r.close_lags)} attempts all closed, {pct(lags, 50) * 1000:.0f} ms (p50), "
        f"{lags[-1] * 1000:.0f} ms (max) after the client left",
        f"  proxy idle before -> after: tasks {r.baseline.get('tasks')} -> {r.final.get('tasks')}, "
        f"fds {r.baseline.get('fds')} -> {r.final.get('fds')}, "
        f"RSS {r.baseline.get('rss_bytes', 0) / mib:.1f} -> {r.final.get('rss_bytes', 0) / mib:.1f} MiB",
        f"  overload: {r.overload_accepted} accepted at the limit of {opts.max_streams}, "
        f"{r.overload_accepted_intact} intact; {len(r.overload_refused)} excess: "
        f"{sum(s == 503 for s, _ in r.overload_refused)} got 503, answered in p50 {pct(waits, 50) * 1000:.0f} ms, "
        f"max {waits[-1] * 1000:.0f} ms",
        f"  access log: {r.access_lines} lines, /metrics: {r.metrics_streams:.0f} streams "
        f"(the client began {r.least} and sent {r.most})",
    ]
    lines += [f"  BROKEN {b}" for b in r.broken[:5]]
    lines.append("PASS" if r.ok else "FAIL: " + "; ".join(r.problems))
    return "\n".join(lines)


def pct(values: list[float], p: int) -> float:
    return values[min(len(values) - 1, len(values) * p // 100)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    for name, default in vars(Options()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    opts = Options(**vars(parser.parse_args(argv)))
    report = anyio.run(run, opts)
    print(render(report, opts))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
