"""How soon the upstream connection closes after the client leaves, in each phase of a stream.

Real sockets on 127.0.0.1: the mock OpenAI upstream and the proxy under uvicorn in this process,
an httpx2 client that drops its connection. Bounded: ROUNDS streams per phase.
Run: .venv/bin/python -m bench.disconnect_latency [ROUNDS]
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time

from tests.conftest import proxy
from tests.test_disconnect import leave_after
from tests.upstream_fixtures import mock_upstream, upstream_config

PHASES = {
    "waiting for the first token": ("gpt+first_delay_ms=10000", 0, 0.2),
    "mid-stream": ("gpt+delay_ms=50", 3, 0),
    "upstream stalled": ("gpt+stall_after=2", 2, 0),
    "retry backoff (Retry-After 3 s)": ("gpt+fail=9:503+retry_after=3", 0, 0.2),
}


async def measure(fault: str, events: int, seconds: float, rounds: int) -> list[float]:
    delays = []
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", fault)])) as client:
        for index in range(rounds):
            left = await leave_after(client, events=events, seconds=seconds)
            attempt = len(up.recorder.attempts) - 1
            closed = up.recorder.attempts[attempt].closed_at or await up.recorder.wait_closed(attempt, 3)
            # in a backoff the last attempt closed before the client left: nothing was open to close
            delays.append(max(0.0, closed - left) * 1000)
            await asyncio.sleep(0.05)
        if "fail=" in fault:
            await asyncio.sleep(0.5)
            delays = [float(len(up.recorder.attempts) - rounds)]  # attempts made after the client left
    return delays


async def main(rounds: int) -> None:
    for phase, (fault, events, seconds) in PHASES.items():
        values = await measure(fault, events, seconds, rounds)
        if "backoff" in phase:
            print(f"{phase:34s} upstream attempts after the client left: {int(values[0])} (of {rounds} streams)")
        else:
            print(f"{phase:34s} close after client left: median {statistics.median(values):.2f} ms, "
                  f"max {max(values):.2f} ms over {rounds} streams")


if __name__ == "__main__":
    logging.getLogger("llm_sse_proxy").setLevel(logging.ERROR)  # one cancelled line per stream is expected
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
