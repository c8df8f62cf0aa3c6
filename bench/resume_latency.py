"""Resume latency with the memory store: from sending a reconnect (GET /streams/{id} with Last-Event-ID)
to the first replayed event, over loopback; p50 and p99 of sequential reconnects.

    .venv/bin/python bench/resume_latency.py --reconnects 300

One proxy process (the CLI, resume on, the in-process mock adapter), pinned like `make bench`'s server;
this client on the other core. Each round starts a 100-event stream, reads it whole, then reconnects
`per_stream` times with a cursor in the middle (a finished stream still retained: the replay path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paths  # noqa: E402
import procs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reconnects", type=int, default=300)
    parser.add_argument("--per-stream", type=int, default=10)
    args = parser.parse_args()
    import run  # here, not at the top: run.py imports this module for `make bench`'s resume phase

    run.prepare_machine()
    with tempfile.TemporaryDirectory(prefix="bench-resume-latency-") as tmp:
        port = procs.free_port()
        config = Path(tmp) / "proxy.yaml"
        mock = {"name": "mock", "adapter": "mock", "chunk_delay_ms": 0, "chunk_chars": 1, "reply": "x" * 99}
        limits = {"requests_per_minute": 1e9, "burst": 1_000_000}
        config.write_text(json.dumps({"server": {"host": "127.0.0.1", "port": port}, "default_model": "mock",
                                      "models": [mock], "limits": limits}))
        cli = paths.VENV_PYTHON.parent / "llm-sse-proxy"
        server = procs.start("proxy", [str(cli), "--config", str(config), "--log-level", "warning"], run.SERVER_CORE)
        try:
            if not procs.wait_listening(port, 20):
                raise SystemExit("the proxy did not start")
            latencies = measure(f"http://127.0.0.1:{port}", args.reconnects, args.per_stream)
        finally:
            server.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"resume latency, memory store, {len(latencies)} reconnects: p50 {statistics.median(latencies) * 1e3:.2f} ms, "
          f"p99 {p99 * 1e3:.2f} ms")
    return 0


def measure(base: str, reconnects: int, per_stream: int, resume_base: str | None = None) -> list[float]:
    """Seconds from each reconnect to its first replayed event; `resume_base`: reconnect to another replica."""
    out: list[float] = []
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with httpx2.Client(timeout=10) as client:
        while len(out) < reconnects:
            with client.stream("POST", f"{base}/chat", json=body) as response:
                sid = response.headers["x-stream-id"]
                response.read()
            for _ in range(per_stream):
                started = time.perf_counter()
                with client.stream("GET", f"{resume_base or base}/streams/{sid}",
                                   headers={"last-event-id": f"{sid}:50"}) as response:
                    for chunk in response.iter_bytes():
                        if b"data:" in chunk:
                            out.append(time.perf_counter() - started)
                            break
    return out[:reconnects]


if __name__ == "__main__":
    sys.exit(main())
