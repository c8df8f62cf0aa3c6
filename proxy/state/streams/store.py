"""The seam between a resumable stream's producer (its owner) and its readers: `StreamStore`.

A stream is a log of encoded SSE frames numbered 1, 2, 3... (its seq), written by one owner and read
by any number of readers, each from its own cursor. The last frame is the terminal one (the
terminate event); after it the stream is finished and kept for `retention` seconds, then forgotten.
Frames are stored as the exact bytes sent to a browser (`id: <sid>:<seq>` included), so every reader
on every replica gets byte-identical events, and a replay is a slice of the log.

Backends: `MemoryStore` (one process, the default) and a Redis one (replicas). Both take their
limits (grace, retention, caps) at construction and must pass the same contract tests
(tests/test_resume_store.py). Every method may raise `StoreUnavailable` when the backend cannot be
reached; the HTTP layer answers 503 before a stream starts and a terminate `store_unavailable` after.

Who calls what:
- the owner (the generation registry): `create`, then `append`... and one `finish`, while watching
  `watch_stop` (or awaiting `wait_stop`), which tells it when to cancel its upstream;
- an HTTP reader: `status` (to answer 204/404 before a 200), then `read`;
- the stop endpoint: `request_stop`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

StreamState = Literal["running", "finished"]
# Why an owner must stop before its upstream finished: someone asked (the stop endpoint), or no reader
# was present anywhere for `grace` seconds.
StopCause = Literal["stopped", "abandoned"]
# Told why the owner must cancel its upstream: a StopCause, or the store error that ended its lease
# (Fenced, StoreUnavailable), as `wait_stop` returns or raises it.
OnStop = Callable[[StopCause | Exception], None]
Unwatch = Callable[[], None]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The limits every backend keeps per stream; each backend's own limits extend them."""

    grace: float = 30.0  # seconds a running stream waits for a reader before it is abandoned
    retention: float = 300.0  # seconds a finished stream stays readable
    max_events: int = 20_000  # per stream; past it the oldest frames are dropped
    max_bytes: int = 2 * 1024 * 1024  # per stream, likewise


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """What the store keeps about a stream besides its frames."""

    owner: str  # fingerprint of the client that started it (an HMAC, never a key); compare with hmac.compare_digest
    replica: str = ""  # the process that generates it, where a stop request is sent (empty in one process)
    label: str = ""  # a name a door finds its newest stream by (`labelled`), e.g. a chat id; empty: none


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to write one stream; the token fences out an owner that lost it (a paused zombie)."""

    sid: str
    token: str


@dataclass(frozen=True, slots=True)
class StreamStatus:
    sid: str
    state: StreamState
    owner: str  # StreamMeta.owner
    first_seq: int  # the oldest seq still retained: 1 unless the per-stream cap trimmed the head
    last_seq: int  # the newest seq written, 0 before the first; the terminal's seq once finished
    reason: str | None  # the terminal reason ("stop", "cancelled", "error"...) once finished, else None
    stop_requested: bool


class StreamStore(Protocol):
    """A store of resumable streams. All methods are coroutines except `read`, an async iterator."""

    # True if `append` waits on a round trip: the writer then sends the frames emitted meanwhile as one
    # batch (proxy/resume/writer.py). False if it costs no I/O: the writer appends each frame at once.
    batches_appends: bool

    async def create(self, sid: str, meta: StreamMeta) -> Lease:
        """Register a new running stream with no frames, owned by the caller.

        Raises `StreamExists` if `sid` is known (running, or finished and still retained), and
        `StoreUnavailable` when the store is full (its memory budget or stream count) or down. The grace
        clock starts now: if no reader comes within `grace` seconds, `wait_stop` returns "abandoned".
        Every key or entry it makes expires on its own (retention + grace past the last write), so a
        crashed owner leaks nothing.
        """
        ...

    async def append(self, lease: Lease, first_seq: int, frames: Sequence[bytes]) -> int:
        """Append `frames`, the i-th being seq `first_seq + i`; return the stream's last seq.

        `first_seq` must be last + 1. A retried batch (first_seq <= last) is a no-op that returns last,
        even if it carries frames past last (the writer sends those next); a gap (first_seq > last + 1) is a bug and raises ValueError. Returns only
        once the frames are durable in the store: a reader on any replica may then get them (commit,
        then deliver). Raises `Fenced` if the lease was lost or the stream is finished.
        Past the per-stream caps (events, bytes) the oldest frames are dropped (first_seq grows), except
        frames an attached reader has not got yet (a slow reader is bounded by its send timeout, not by
        the cap); a backend that cannot tell gives such a reader `ResumeGap`. A live stream is never
        dropped whole.
        """
        ...

    async def finish(self, lease: Lease, seq: int, frame: bytes, reason: str) -> None:
        """Append the terminal `frame` as `seq` (last + 1), mark the stream finished with `reason`.

        Readers get the frame and then end. The stream stays readable for `retention` seconds, then
        is forgotten (status None). A retried call after success is a no-op. Raises `Fenced` as append.
        """
        ...

    def read(self, sid: str, after: int) -> AsyncIterator[bytes]:
        """The frames with seq > `after`, in order, each once: the retained ones, then live ones as
        they are appended; it ends right after the terminal frame (at once if `after` >= its seq).

        Checked at the first `__anext__`: `StreamNotFound` (unknown or expired), `CursorAhead` (`after` >
        last seq), `ResumeGap` (after + 1 < first_seq; also later, if the cap drops frames before this
        reader got them, in a backend that cannot hold them for it). It does not check who asks:
        callers compare `status().owner` first.
        From its first `__anext__` until it is closed or exhausted the iterator is a present reader,
        which holds off "abandoned" (a TTL-based backend refreshes that presence on its own, at least
        every grace / 3, even while the consumer is blocked writing to a slow client). A reader whose
        owner died (its lease expired while running) gets a terminal `error`/`owner_lost` frame written
        by the store (idempotently, at last + 1) within lease + one blocking read, never a hang.
        """
        ...

    async def status(self, sid: str) -> StreamStatus | None:
        """The stream's state, or None if it is unknown or expired."""
        ...

    async def labelled(self, label: str) -> str | None:
        """The id of the newest stream created with `label` while that stream is kept (running, or retained),
        else None. A newer stream with the same label replaces it. Around the stream's own expiry the id may
        name a stream already forgotten (its `status` is None): callers check the status, as they must anyway.
        """
        ...

    async def request_stop(self, sid: str) -> StreamStatus:
        """Ask the owner to stop now: its `wait_stop` returns "stopped" (at once in one process; across
        replicas as soon as a message arrives, within lease / 3 at worst). Idempotent; on a finished
        stream it changes nothing.
        Returns the status as of the call. Raises `StreamNotFound`.
        """
        ...

    async def wait_stop(self, lease: Lease) -> StopCause:
        """Await, for the whole life of the generation, the reason its owner must cancel its upstream.

        The owner runs it beside the generation and cancels it when the generation finishes. Meanwhile
        it keeps the lease alive (renewed at least every lease / 3). Returns "stopped" once
        `request_stop` was called, or "abandoned" once no reader has been present anywhere for `grace`
        seconds (checked at least once a second). Raises `Fenced` if the lease was lost. The owner then
        cancels its upstream and writes the terminal (`cancelled`, with the cause) through `finish`.
        """
        ...

    def watch_stop(self, lease: Lease, on_stop: OnStop) -> Unwatch:
        """`wait_stop` as a callback: call `on_stop` once with what `wait_stop` would return or raise.

        The returned function ends the watch (on_stop is not called after it). A store that is told of a
        stop (one process) calls back from the stop itself, with no task per stream waiting for it.
        """
        ...

    async def ready(self) -> str | None:
        """None when a new stream could be created now; else why not (for /readyz: no secrets, no URL)."""
        ...

    async def aclose(self) -> None:
        """Release connections and timers (lifespan shutdown); pending readers end."""
        ...
