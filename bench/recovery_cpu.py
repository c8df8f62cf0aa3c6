"""The relay's CPU per text chunk in-process, with `recovery: off` and `recovery: continue` (issue 12).

A model configured for recovery keeps the text it relays (one list append per chunk), so a healthy
stream's per-chunk cost is the figure to watch. No sockets, no adapter decoding: deltas already made,
through the relay, to an emit that does nothing. Bounded: ROUNDS alternating rounds of CHUNKS chunks.

    .venv/bin/python bench/recovery_cpu.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_sse_proxy.proxy.config import RetryConfig, TimeoutsConfig  # noqa: E402
from llm_sse_proxy.proxy.deltas import ChatRequest, Delta, Finish, Message, TextDelta, Usage  # noqa: E402
from llm_sse_proxy.proxy.relay.relay import Relay, Upstream  # noqa: E402

CHUNKS, ROUNDS = 5000, 15
DELTAS: list[Delta] = [TextDelta("word ") for _ in range(CHUNKS)] + [Finish("stop", Usage(1, CHUNKS))]
REQUEST = ChatRequest((Message("user", "hi"),))


class Replay:
    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        for delta in DELTAS:
            yield delta


async def emit(payload: dict[str, Any], event: str | None = None) -> None:
    pass


async def once(recovery: str) -> float:
    chain = [Upstream("m", Replay(), recovery=recovery, continue_with="trailing_assistant")]
    started = time.perf_counter()
    await Relay(chain, REQUEST, retry=RetryConfig(), timeouts=TimeoutsConfig()).run(emit)
    return (time.perf_counter() - started) / CHUNKS * 1e6


async def main() -> None:
    figures: dict[str, list[float]] = {"off": [], "continue": []}
    for _ in range(ROUNDS):
        for mode, runs in figures.items():
            runs.append(await once(mode))
    for mode, runs in figures.items():
        print(f"recovery: {mode:9s} median {statistics.median(runs):.3f} us/chunk (min {min(runs):.3f}, max {max(runs):.3f})")


if __name__ == "__main__":
    asyncio.run(main())
