"""The response of one reader of a resumable stream: the store's frames as they are, plus pings.

The frames were encoded once, by the generation, so every reader sends the same bytes. A reader that
cannot be served from its cursor (the stream expired, or dropped the events after it meanwhile) gets
one terminate `error`/`resume_gap` with no id: an empty `id:` would reset the browser's cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import aclosing
from typing import Any

import orjson

from llm_sse_proxy.proxy.relay.relay import Emit
from llm_sse_proxy.proxy.doors.response import SSEResponse
from llm_sse_proxy.proxy.resume.errors import CursorAhead, ResumeGap, StoreUnavailable, StreamNotFound
from llm_sse_proxy.proxy.state.streams.store import StreamStore
from llm_sse_proxy.proxy.relay.sse import terminate_payload



def preamble(sid: str, after: int) -> bytes:
    """For EventSource: its cursor before any event (so a cut before the first event resumes the same
    stream instead of starting another), and a reconnect delay of 1 s (browsers default to about 3).
    A block without `data:` dispatches no event, so pages see nothing of it."""
    return b"id: %s:%d\nretry: 1000\n\n" % (sid.encode(), after)


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
    ) -> None:
        super().__init__(self._pump, ping_interval=ping_interval, send_timeout=send_timeout, headers=headers)
        self.store = store
        self.sid = sid
        self.after = after
        self.for_event_source = for_event_source
        self.gap_frame = gap_frame  # the frame that ends a reader the store cannot serve, in its door's protocol

    async def _pump(self, emit: Emit) -> Any:
        if self.for_event_source:
            await self._write(preamble(self.sid, self.after))
        try:
            async with aclosing(self.store.read(self.sid, self.after)) as frames:  # type: ignore[type-var]
                async for frame in frames:
                    await self._write(frame)
        except (ResumeGap, CursorAhead, StreamNotFound):
            await self._write(self.gap_frame("resume_gap", "the events after this point are no longer kept"))
        except StoreUnavailable:
            # The store went away mid-stream (Redis down): end with a terminate rather than a cut, so the
            # client knows to ask again later instead of reconnecting into the outage.
            await self._write(self.gap_frame("store_unavailable", "the stream store is unavailable; try later"))
