"""Memory per retained stream in the memory store: 1,000 finished 500-event streams of short text deltas.

    .venv/bin/python bench/resume_memory.py

Counted with tracemalloc in one process (no server): frames, their list and the per-stream bookkeeping.
"""

import asyncio
import sys
import tracemalloc
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proxy.resume.memory import MemoryStore
from proxy.resume.store import StreamMeta
from proxy.resume.ids import new_sid
from proxy.sse import encode_event, terminate_payload



async def main(streams=1000, events=500):
    store = MemoryStore()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    frame_bytes = 0
    for _ in range(streams):
        sid = new_sid(); lease = await store.create(sid, StreamMeta(""))
        prefix = sid.encode() + b":"
        for seq in range(1, events):
            f = encode_event(prefix + b"%d" % seq, {"text": " word"})
            frame_bytes += len(f)
            await store.append(lease, seq, (f,))
        await store.finish(lease, events, encode_event(prefix + b"%d" % events, terminate_payload("stop")), "stop")
    after = tracemalloc.get_traced_memory()[0]
    per = (after - before) / streams
    print(f"{streams} finished streams of {events} events: {per:,.0f} B per stream, {per/events:.0f} B per event "
          f"(frame bytes {frame_bytes/streams/(events-1):.0f} B/event)")
    await store.aclose()
if __name__ == "__main__":
    asyncio.run(main())
