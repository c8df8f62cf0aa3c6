"""CPU per resumable stream inside the resume layer alone: start a generation on the memory store, emit
one text and the terminate, read it back with one reader; no HTTP (issue 10: resume's per-stream cost).

    .venv/bin/python bench/resume_generation_cpu.py [--rounds 5]

In-process and bounded: rounds x 5,000 streams, 10 at a time; prints the median of the rounds' CPU time
per stream. Run it from another checkout (PYTHONPATH=<checkout>) to compare revisions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from llm_sse_proxy.proxy.relay.relay import Emit  # noqa: E402
from llm_sse_proxy.proxy.resume.generations import Generations  # noqa: E402
from llm_sse_proxy.proxy.state.streams.memory import MemoryStore  # noqa: E402
from llm_sse_proxy.proxy.relay.sse import terminate_payload, text_payload  # noqa: E402

STREAMS, AT_ONCE = 5000, 10


async def produce(emit: Emit) -> None:
    await emit(text_payload("hello"))
    await emit(terminate_payload("stop"))


async def one(generations: Generations, store: MemoryStore) -> None:
    sid = await generations.start("", produce, lambda ending: None)
    async with aclosing(store.read(sid, 0)) as frames:  # type: ignore[type-var]
        async for _ in frames:
            pass


async def round_us(generations: Generations, store: MemoryStore) -> float:
    started = time.process_time()
    for _ in range(STREAMS // AT_ONCE):
        await asyncio.gather(*(one(generations, store) for _ in range(AT_ONCE)))
    return (time.process_time() - started) / STREAMS * 1e6


async def main(rounds: int) -> None:
    store = MemoryStore()
    generations = Generations(store)
    await round_us(generations, store)  # warm-up
    figures = [await round_us(generations, store) for _ in range(rounds)]
    print(f"median {statistics.median(figures):.1f} us/stream  rounds " + " ".join(f"{f:.1f}" for f in figures))
    await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
