"""The response of one reader of a resumable stream: the store's frames as they are, plus pings.

The frames were encoded once, by the generation, so every reader sends the same bytes. From a store that
hands out every frame ready at once (`read_batches`: the memory store), they go out together, in one write
(a send and a system call per batch, not per frame: issue 27), and the terminate goes with the end of the
body; the event bytes are the same, only the HTTP chunks that carry them are fewer. A reader that
cannot be served from its cursor (the stream expired, or dropped the events after it meanwhile) gets
one terminate `error`/`resume_gap` with no id: an empty `id:` would reset the browser's cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import orjson

from llm_sse_proxy.proxy.relay.relay import Emit
from llm_sse_proxy.proxy.doors.response import OnDone, SSEResponse
from llm_sse_proxy.proxy.resume.errors import CursorAhead, ResumeGap, StoreUnavailable, StreamNotFound
from llm_sse_proxy.proxy.state.streams.store import StreamStore
from llm_sse_proxy.proxy.relay.sse import terminate_payload



def preamble(sid: str, after: int) -> bytes:
    """For EventSource: its cursor before any event (so a cut before the first event resumes the same
    stream instead of starting another), and a reconnect delay of 1 s (browsers default to about 3).
    A block without `data:` dispatches no event, so pages see nothing of it."""
    return b"id: %s:%d\nretry: 1000\n\n" % (sid.encode(), after)


# A batch is joined into one write up to this many frames (a resume may find thousands retained).
WRITE_FRAMES = 64
# ... and up to about this many bytes: the transport's high-water mark (proxy/server/asgi.py). `send_timeout`
# judges one write's progress, so a slow reader that keeps reading must see writes it can drain in time.
WRITE_BYTES = 16 * 1024
# The data line of a stream's terminal frame: it is always the stream's last (proxy/relay/sse.py puts
# `action` first; JSON escapes any newline inside a string, so no other frame holds this).
TERMINAL = b'\ndata: {"action":"terminate"'


def unnumbered_terminate(error_type: str, message: str) -> bytes:
    return b"data: %s\n\n" % orjson.dumps(terminate_payload("error", error=(error_type, message)))


class ReaderResponse(SSEResponse):
    """Streams `store.read(sid, after)`. Not tied to shutdown: the generation's terminate ends it."""

    def __init__(
        self,
        store: StreamStore,
        sid: str,
        after: int,
        *,
        ping_interval: float,
        send_timeout: float,
        headers: Mapping[str, str],
        for_event_source: bool = False,
        gap_frame: Callable[[str, str], bytes] = unnumbered_terminate,
        on_done: OnDone | None = None,
    ) -> None:
        super().__init__(self._pump, ping_interval=ping_interval, send_timeout=send_timeout, headers=headers,
                         on_done=on_done)
        self.store = store
        self.sid = sid
        self.after = after
        self.for_event_source = for_event_source
        self.gap_frame = gap_frame  # the frame that ends a reader the store cannot serve, in its door's protocol

    async def _pump(self, emit: Emit) -> Any:
        if self.for_event_source:
            await self._write(preamble(self.sid, self.after))
        read_batches = getattr(self.store, "read_batches", None)
        try:
            if read_batches is None:
                async with aclosing(self.store.read(self.sid, self.after)) as frames:  # type: ignore[type-var]
                    async for frame in frames:
                        if self.stopping:
                            return
                        await self._write(frame)
            else:
                async with aclosing(read_batches(self.sid, self.after)) as batches:
                    async for batch in batches:
                        if self.stopping:
                            return
                        await self._write_frames(batch)
        except (ResumeGap, CursorAhead, StreamNotFound):
            await self._write(self.gap_frame("resume_gap", "the events after this point are no longer kept"))
        except StoreUnavailable:
            # The store went away mid-stream (Redis down): end with a terminate rather than a cut, so the
            # client knows to ask again later instead of reconnecting into the outage.
            await self._write(self.gap_frame("store_unavailable", "the stream store is unavailable; try later"))

    async def _write_frames(self, frames: Sequence[bytes]) -> None:
        part: list[bytes] = []
        size = 0
        for frame in frames:
            part.append(frame)
            size += len(frame)
            if size >= WRITE_BYTES or len(part) >= WRITE_FRAMES:
                await self._write_part(part)
                part, size = [], 0
        if part:
            await self._write_part(part)

    async def _write_part(self, part: list[bytes]) -> None:
        data = part[0] if len(part) == 1 else b"".join(part)
        if TERMINAL in part[-1]:
            await self._write(data, more_body=False)  # the last frame and the end of the body, together
            self._ended = True
        else:
            await self._write(data)
