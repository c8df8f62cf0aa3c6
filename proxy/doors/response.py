"""The streaming response: one ASGI callable per stream.

It numbers and sends the events a producer emits, sends a keep-alive comment whenever the stream
has been idle for `ping_interval` (before the first token too), stops the producer at once when
the client goes away, and on shutdown lets it finish within a grace period before ending it with
a `shutdown` terminate (or, to a client that stopped reading, a reset, after FAREWELL_SECONDS). Pings run in their own task, so no upstream read is ever interrupted to
send one (streaming-pitfalls.md 7.5).

A client that stops reading makes `send` wait once the server's buffers are full (100-175 KiB: the
transport's 16 KiB and the socket's, both bounded in `proxy.server.asgi.bound_send_buffers`): memory per stream
stays bounded. The same task that pings
watches for that: a write still pending after `send_timeout` seconds ends the stream as a disconnect
("send_timeout"), which cancels the producer (and so closes the upstream) and aborts the connection.
`_write` only records when its write started, so the watch costs nothing per event.

The terminate event ends the response: the client has its answer, and `on_done` frees the stream's
slot, even while the producer still cleans up (an upstream that leaves its body open after its end
marker is drained for a moment, to reuse its connection).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from llm_sse_proxy.proxy.relay.relay import Emit
from llm_sse_proxy.proxy.relay.sse import PING, encode_event, terminate_payload

log = logging.getLogger("llm_sse_proxy.stream")

Produce = Callable[[Emit], Awaitable[object]]
OnDone = Callable[[str | None], None]  # "cancelled", "send_timeout", "shutdown", or None when it finished
ABORT = "llm_sse_proxy.abort"  # scope key: a callable that aborts the client's connection, if the server has one
# Scope key: the server's own `send`, for the events once the response has started. Each middleware
# wraps `send` to watch `http.response.start` only (CORS, error handling), yet costs a call per event;
# none may change an SSE body (never compressed). Without it, events go through the wrapped `send`.
SEND_BODY = "llm_sse_proxy.send_body"

# The shutdown terminate's write, bounded: uvicorn cancels what is left 2 s after the grace (proxy/server/serve.py).
FAREWELL_SECONDS = 1.0

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


class Shutdown:
    """When the server begins to stop, the open streams have `grace` seconds left, then are ended.

    One timer ends them all, not a waiting task per stream: each stream only registers the cancel
    scope of its producer while it runs. A stream that starts after the deadline ends at once.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._deadline: float | None = None  # the loop's time at which streams are ended
        self._producers: set[anyio.CancelScope] = set()
        self._draining = False

    def drain(self) -> None:
        """The server is about to stop (SIGTERM with `server.drain_delay`): `/readyz` says so, streams go on."""
        self._draining = True

    @property
    def draining(self) -> bool:
        """True from the stop signal on: a load balancer should send no new streams here."""
        return self._draining or self.begun

    def begin(self) -> None:
        """Call on the event loop (a signal handler must schedule it there); only the first call counts."""
        if self._deadline is None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + self.grace
            loop.call_at(self._deadline, self._end_all)

    def end_now(self) -> None:
        """A forced stop (a second Ctrl-C): end every stream now, each still with its terminate."""
        self.begin()
        self._deadline = asyncio.get_running_loop().time()
        self._end_all()

    @property
    def begun(self) -> bool:
        return self._deadline is not None

    @contextmanager
    def ending(self, producer: anyio.CancelScope) -> Iterator[None]:
        """Cancel `producer` at the deadline (at once if it has passed) while the block runs."""
        self._producers.add(producer)
        if self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline:
            producer.cancel()  # _end_all has run: nothing else will
        try:
            yield
        finally:
            self._producers.discard(producer)

    def _end_all(self) -> None:
        for producer in list(self._producers):
            producer.cancel()


class SSEResponse:
    ping = PING  # the keep-alive; a door whose clients expect another writes its own

    def __init__(
        self,
        produce: Produce,
        *,
        ping_interval: float,
        send_timeout: float = 30.0,
        shutdown: Shutdown | None = None,
        headers: Mapping[str, str] | None = None,
        on_done: OnDone | None = None,
    ) -> None:
        self.produce = produce
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.shutdown = shutdown
        self.headers = {**SSE_HEADERS, **(headers or {})}
        self.on_done = on_done
        self._send: Send | None = None
        self._events = 0
        self._last_write = 0.0
        self._write_started: float | None = None  # set while a write is pending
        self._ended = False  # the terminate and the end of the body have been sent
        # The watcher ended the stream (the client left, a send timed out). A producer that never waits on
        # anything not yet done (a reader draining a store its generation keeps filling, to a connection
        # whose sends return at once) may not see the cancel: anyio does not cancel a task whose wait has
        # already completed, so it checks this between batches.
        self.stopping = False
        self._reported = False
        self._clock: Callable[[], float] = time.monotonic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ending: str | None = None
        try:
            ending = await self._respond(scope, receive, send)
        except BaseException:
            if self.shutdown is not None and self.shutdown.begun:
                ending = "shutdown"  # the server stopping cut it off, not the client
            raise
        finally:
            self._report(ending)

    def _report(self, ending: str | None) -> None:
        if not self._reported:
            self._reported = True
            if self.on_done is not None:
                self.on_done(ending)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        # The loop's clock is anyio's on asyncio; read directly, it skips a backend lookup per event.
        self._clock = asyncio.get_running_loop().time
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        self._send = send = scope.get(SEND_BODY, send)
        self._last_write = self._clock()
        ending: str | None = None
        with anyio.CancelScope() as stream:

            def end(reason: str) -> None:
                nonlocal ending
                ending = reason
                self.stopping = True
                stream.cancel()

            # One plain task beside the producer: an anyio task group costs several times as much (issue 13).
            watcher = asyncio.get_running_loop().create_task(self._watch(receive, end))
            watcher.add_done_callback(lambda task: task.cancelled() or task.exception() is None or stream.cancel())
            try:
                if not await self._run_until_shutdown():
                    ending = "shutdown"
            finally:
                watcher.cancel()
        if watcher.done() and not watcher.cancelled() and (failure := watcher.exception()) is not None:
            raise failure  # as a task group would: a broken watch must not leave the stream unwatched
        self._report(ending)  # before an abort's wait: the log line must not depend on the client
        if ending == "send_timeout" or (ending == "shutdown" and not self._ended):
            await _abort(scope, receive)
        elif ending != "cancelled" and not self._ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return ending

    async def _run_until_shutdown(self) -> bool:
        """True if the producer finished; False if shutdown ended it (with a terminate, if the client reads)."""
        with anyio.CancelScope() as work, self.shutdown.ending(work) if self.shutdown else nullcontext():
            await self.produce(self.emit)
            return True
        if not self._ended:
            # A client that stopped reading must not hold the process past the server's own grace.
            with anyio.move_on_after(FAREWELL_SECONDS):
                await self.emit(terminate_payload("shutdown"), ending="shutdown")
        return False

    async def emit(self, payload: dict[str, Any], event: str | None = None, ending: str | None = None) -> None:
        """Send one event (named `event`, if given); the producer awaits it, so a slow client slows it. The
        terminate ends the response (`ending` is what it reports: None when the producer finished)."""
        self._events += 1
        if payload.get("action") != "terminate":
            await self._write(encode_event(self._events, payload, event))
            return
        # Always the last event: it and the end of the body go out in one write (one syscall less per stream).
        await self._write(encode_event(self._events, payload, event), more_body=False)
        self._ended = True
        self._report(ending)

    async def _write(self, data: bytes, more_body: bool = True) -> None:
        assert self._send is not None
        self._write_started = started = self._clock()
        await self._send({"type": "http.response.body", "body": data, "more_body": more_body})
        self._write_started = None
        self._last_write = started

    async def _watch(self, receive: Receive, end: Callable[[str], None]) -> None:
        """The stream's one helper task: `end("cancelled")` when the client leaves, `end("send_timeout")` when
        a write has been pending for `send_timeout`, and a ping when the stream has been idle.

        It waits for the client's next message until the next check is due. A wait ended by its deadline
        takes no message: the server's `receive` only waits for one before taking it (Starlette's
        `is_disconnected` relies on the same)."""
        now = self._clock()
        while True:
            with anyio.CancelScope(deadline=self._next_check(now)):
                if (await receive())["type"] == "http.disconnect":
                    if not self._ended:  # the server says so once the response is complete: the producer may finish
                        end("cancelled")
                    return
                continue  # another part of the request body: ignored, as before
            if self._ended:
                return
            now = self._clock()
            started = self._write_started
            if started is not None:
                if now - started >= self.send_timeout:
                    return end("send_timeout")
            elif now - self._last_write >= self.ping_interval:
                with anyio.move_on_after(self.send_timeout) as ping:
                    await self._write(self.ping)
                if ping.cancelled_caught:
                    return end("send_timeout")

    def _next_check(self, now: float) -> float:
        if self._write_started is not None:
            return self._write_started + self.send_timeout
        # Idle: the next ping is due, or a write that starts from now on could be stuck.
        return min(self._last_write + self.ping_interval, now + self.send_timeout)


async def _abort(scope: Scope, receive: Receive) -> None:
    """Drop a connection whose client stopped reading: a graceful close would wait for it to read."""
    abort = scope.get(ABORT)
    if abort is None:
        return  # the server closes the connection when the app returns without finishing
    abort()
    with anyio.move_on_after(1):  # let the server see the loss, so it does not report an unfinished response
        while (await receive())["type"] != "http.disconnect":
            pass
