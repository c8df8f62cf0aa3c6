"""Memory per retained stream in the memory store: finished 500-event streams of short text deltas.

    .venv/bin/python bench/resume_memory.py [--streams 1000]

Counted with tracemalloc in one process (no server): frames, their list and the per-stream bookkeeping.
`make bench`'s resume phase calls `per_stream` (bench/resume_phase.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_sse_proxy.proxy.resume.ids import new_sid  # noqa: E402
from llm_sse_proxy.proxy.state.streams.memory import MemoryStore  # noqa: E402
from llm_sse_proxy.proxy.state.streams.store import StreamMeta  # noqa: E402
from llm_sse_proxy.proxy.relay.sse import encode_event, terminate_payload  # noqa: E402


async def per_stream(streams: int = 1000, events: int = 500) -> dict:
    """Bytes the store holds per finished stream of `events` events, and the frames' own bytes per event."""
    store = MemoryStore()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        frame_bytes = 0
        for _ in range(streams):
            frame_bytes += await _one_stream(store, events)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        await store.aclose()
    return {"streams": streams, "events": events, "bytes_per_stream": held / streams,
            "bytes_per_event": held / streams / events, "frame_bytes_per_event": frame_bytes / streams / events}


async def _one_stream(store: MemoryStore, events: int) -> int:
    sid = new_sid()
    lease = await store.create(sid, StreamMeta(""))
    prefix = sid.encode() + b":"
    frame_bytes = 0
    for seq in range(1, events):
        frame = encode_event(prefix + b"%d" % seq, {"text": " word"})
        frame_bytes += len(frame)
        await store.append(lease, seq, (frame,))
    last = encode_event(prefix + b"%d" % events, terminate_payload("stop"))
    await store.finish(lease, events, last, "stop")
    return frame_bytes + len(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    found = asyncio.run(per_stream(args.streams, args.events))
    print(f"{found['streams']} finished streams of {found['events']} events: {found['bytes_per_stream']:,.0f} B per "
          f"stream, {found['bytes_per_event']:.0f} B per event (frame bytes {found['frame_bytes_per_event']:.0f} B/event)")


if __name__ == "__main__":
    main()
