"""CPU per relayed chunk of each HTTP adapter, same run, interleaved: the adapter alone, or the proxy.

The mock upstream runs in a subprocess and serves every dialect. Alone (default), this process runs
the adapters, so its CPU time is theirs plus the HTTP client's. With --proxy, the proxy runs in a
subprocess with one model per adapter, and its CPU (from /proc) is measured while this process reads
its event streams. Per chunk = (CPU of a 401-chunk stream - CPU of a 1-chunk stream) / 400, the median
over rounds; per request = the 1-chunk stream's CPU. About 30 s alone, 60 s with --proxy.

    .venv/bin/python bench/adapter_cpu.py [--proxy] [--rounds 7] [--streams 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2  # noqa: E402

from llm_sse_proxy.adapters import REGISTRY  # noqa: E402
from llm_sse_proxy.adapters.http_client import HttpClients  # noqa: E402
from bench.procs import Proc, free_port  # noqa: E402
from llm_sse_proxy.proxy.deltas import ChatRequest, Message  # noqa: E402

PATHS = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta", "ollama": ""}
LONG = 400


def adapter(dialect: str, url: str, http):
    spec = REGISTRY[dialect]
    options = {"base_url": url + PATHS[dialect], "api_key": "bench-key-0123456789", "model": "m+chunk_chars=1"}
    return spec.build(spec.options.model_validate(options), http=http)


async def cpu_per_stream(stream, request: ChatRequest, streams: int) -> float:
    started = time.process_time()
    for _ in range(streams):
        async for _delta in stream(request):
            pass
    return (time.process_time() - started) / streams


async def alone(url: str, rounds: int, streams: int) -> tuple[dict, dict]:
    short = ChatRequest([Message("user", "echo:x")], max_tokens=100_000)
    long = ChatRequest([Message("user", "echo:" + "y" * (LONG + 1))], max_tokens=100_000)
    per_chunk: dict[str, list[float]] = {d: [] for d in PATHS}
    per_request: dict[str, list[float]] = {d: [] for d in PATHS}
    async with HttpClients(connect_timeout=5).new() as http:
        adapters = {d: adapter(d, url, http) for d in PATHS}
        for a in adapters.values():  # warm up: connections, imports, caches
            await cpu_per_stream(a.stream, long, 3)
        for _ in range(rounds):
            for dialect, a in adapters.items():  # interleaved, so drift hits them all alike
                one = await cpu_per_stream(a.stream, short, streams)
                many = await cpu_per_stream(a.stream, long, streams)
                per_request[dialect].append(one * 1e6)
                per_chunk[dialect].append((many - one) / LONG * 1e6)
    return per_chunk, per_request


async def through_proxy(url: str, rounds: int, streams: int) -> tuple[dict, dict]:
    port = free_port()
    models = [{"name": d, "adapter": d, "base_url": url + PATHS[d], "api_key": "bench-key-0123456789",
               "model": "m+chunk_chars=1"} for d in PATHS]
    config = {"server": {"port": port}, "default_model": "openai", "models": models,
              "logging": {"access_log": False}, "limits": {"requests_per_minute": 1e6, "burst": 100000}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        json.dump(config, file)  # JSON is YAML
    popen = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.proxy", "--config", file.name], stderr=subprocess.DEVNULL)
    proc = Proc("proxy", popen, time.perf_counter())
    per_chunk: dict[str, list[float]] = {d: [] for d in PATHS}
    per_request: dict[str, list[float]] = {d: [] for d in PATHS}
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await wait_up(client)

            async def cpu(model: str, text: str, n: int) -> float:
                before = proc.cpu()
                for _ in range(n):
                    body = {"model": model, "messages": [{"role": "user", "content": "echo:" + text}],
                            "max_tokens": 100_000}
                    async with client.stream("POST", "/chat", json=body) as response:
                        await response.aread()
                return (proc.cpu() - before) / n

            for d in PATHS:
                await cpu(d, "y" * LONG, 3)
            for _ in range(rounds):
                for d in PATHS:
                    one = await cpu(d, "x", streams)
                    many = await cpu(d, "y" * (LONG + 1), streams)
                    per_request[d].append(one * 1e6)
                    per_chunk[d].append((many - one) / LONG * 1e6)
    finally:
        proc.stop()
        Path(file.name).unlink()
    return per_chunk, per_request


async def wait_up(client: httpx2.AsyncClient) -> None:
    for _ in range(200):
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the proxy did not start")


async def main(rounds: int, streams: int, via_proxy: bool) -> None:
    mock = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.mock_upstream", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+)/v1", mock.stdout.readline()).group(1)  # type: ignore[union-attr]
        measure = through_proxy if via_proxy else alone
        per_chunk, per_request = await measure(url, rounds, streams)
    finally:
        mock.terminate()
        mock.wait(10)
    print("through the proxy (proxy process CPU)" if via_proxy else "the adapter alone (client process CPU)")
    base = statistics.median(per_chunk["openai"])
    print(f"{'adapter':10} {'us/chunk':>9} {'vs openai':>10} {'us/request':>11}   (median of {rounds} rounds x {streams} streams)")
    for dialect in PATHS:
        chunk = statistics.median(per_chunk[dialect])
        print(f"{dialect:10} {chunk:9.2f} {chunk / base - 1:+10.0%} {statistics.median(per_request[dialect]):11.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--proxy", action="store_true", help="measure the whole proxy, not the adapter alone")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.streams, args.proxy))
