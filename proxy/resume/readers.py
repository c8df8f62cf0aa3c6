"""What a reader of a resumable stream may take (issue 26 item 2): one of its client's stream slots, and one
of the stream's reader places in this process.

A reader that comes back (`GET /streams/{sid}`, or a reconnect with Last-Event-ID) holds a slot of
`limits.streams_per_client` for as long as it reads, as a new stream does (exact across replicas with
Redis), so one key cannot attach hundreds of readers. The first reader, the response of the request that
started the stream, takes no slot of its own: the generation holds one. Every reader, the first included,
takes a place among `resume.max_readers_per_stream` of its stream in this process.
"""

from __future__ import annotations

from collections.abc import Callable

from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.admission.limits import STREAM_RETRY_AFTER
from llm_sse_proxy.proxy.errors import TooManyRequests
from llm_sse_proxy.proxy.state.limits import SharedLimits

Leave = Callable[[], None]


class ReaderPlaces:
    """The readers of each stream in this process, capped per stream."""

    def __init__(self, limits: SharedLimits, per_stream: int) -> None:
        self.limits = limits
        self.per_stream = per_stream
        self._readers: dict[str, int] = {}

    def readers(self, sid: str) -> int:
        return self._readers.get(sid, 0)

    def first(self, sid: str) -> Leave:
        """The place of the reader that started the stream (it cannot be full yet)."""
        return self._take(sid)

    async def enter(self, client: Client, sid: str) -> Leave:
        """A place for a reader that came back; raise 429 when the stream or the client has none left."""
        held = self._readers.get(sid, 0)
        if held >= self.per_stream:
            raise TooManyRequests(f"this stream already has {held} readers; close one first",
                                  retry_after=STREAM_RETRY_AFTER, type_="too_many_readers")
        leave_place = self._take(sid)  # before the slot's round trip, so that readers arriving meanwhile count it
        try:
            leave_slot = await self.limits.enter(client.identity)
        except BaseException:
            leave_place()
            raise

        def leave() -> None:
            leave_place()
            leave_slot()

        return leave

    def _take(self, sid: str) -> Leave:
        self._readers[sid] = self._readers.get(sid, 0) + 1
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                remaining = self._readers[sid] - 1
                if remaining:
                    self._readers[sid] = remaining
                else:
                    del self._readers[sid]

        return leave
