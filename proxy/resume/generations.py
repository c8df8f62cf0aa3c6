"""The generation registry: each resumable stream's producer runs in a task of the process, not of
the request that started it, and writes its events to the store; readers come and go.

A generation ends when its producer emits the terminate, or is cancelled (its upstream closed) when
the store says so (`watch_stop`: a stop request, or `grace` seconds with no reader), when the server
shuts down (`Shutdown`), or when it lost the stream (`Fenced`) or the store failed. Each way but the
last two writes one terminal event, so every reader ends with exactly one terminate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import anyio

from llm_sse_proxy.proxy.resume.errors import Fenced, StoreUnavailable
from llm_sse_proxy.proxy.resume.ids import new_sid
from llm_sse_proxy.proxy.state.streams.store import Lease, OnStop, StopCause, StreamMeta, StreamStore, Unwatch
from llm_sse_proxy.proxy.resume.writer import EncodeFrame, Writer
from llm_sse_proxy.proxy.doors.response import OnDone, Produce, Shutdown
from llm_sse_proxy.proxy.relay.sse import encode_event, terminate_payload

log = logging.getLogger("llm_sse_proxy.resume")
# Told why the store failed a stream, for a metric: "refused" (a new stream), "unavailable" or "fenced"
# (a running generation ended without its terminate, or with it unstored).
OnStoreFailure = Callable[[str], None]


def cancelled_payload(cause: StopCause) -> dict[str, Any]:
    payload = terminate_payload("cancelled")
    payload["code"] = cause  # "stopped" (asked to) or "abandoned" (no reader for `grace` seconds)
    return payload


class Generations:
    """The running generations of this process, each in its own task."""

    def __init__(self, store: StreamStore, *, shutdown: Shutdown | None = None, replica: str = "",
                 on_store_failure: OnStoreFailure = lambda reason: None) -> None:
        self.store = store
        self.shutdown = shutdown
        self.replica = replica
        self.on_store_failure = on_store_failure
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def start(self, owner: str, produce: Produce, on_done: OnDone | None = None, *, label: str = "",
                    encode: EncodeFrame = encode_event, on_stop: Callable[[StopCause], None] | None = None) -> str:
        """Create a stream for `owner` and run `produce` into it, its events written by `encode`; return its
        id. `label` names it for `StreamStore.labelled`; `on_stop` is told why the store stopped it, if it
        did (before `on_done`). Raises StoreUnavailable."""
        sid = new_sid()
        try:
            lease = await self.store.create(sid, StreamMeta(owner, self.replica, label))
        except StoreUnavailable:
            self.on_store_failure("refused")
            raise
        task = asyncio.get_running_loop().create_task(self._run(lease, produce, on_done, encode, on_stop))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return sid

    async def aclose(self) -> None:
        """Cancel what is left (lifespan shutdown, after `Shutdown` had its chance to end them cleanly)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _run(self, lease: Lease, produce: Produce, on_done: OnDone | None, encode: EncodeFrame,
                   on_stop: Callable[[StopCause], None] | None) -> None:
        reported = False

        def report(ending: str | None) -> None:
            nonlocal reported
            if not reported and on_done is not None:
                on_done(ending)
            reported = True

        ending: str | None = "cancelled"
        try:
            # At the terminate, not when the producer returns: it may still drain its upstream (issue 16).
            ending = await self._generate(lease, produce, lambda: report(None), encode, on_stop)
        finally:
            report(ending)

    async def _generate(self, lease: Lease, produce: Produce, on_finished: Callable[[], None],
                        encode: EncodeFrame, on_stop: Callable[[StopCause], None] | None) -> str | None:
        cause: StopCause | None = None
        # A cancel scope, not a task group, unless the writer sends batches beside the producer: the stop
        # watch is a callback (`watch_stop`), so a stream in one process runs no task but its own.
        with anyio.CancelScope() as scope:
            writer = Writer(self.store, lease, scope, on_finished, encode=encode)

            def stop(reason: StopCause | Exception) -> None:
                nonlocal cause
                if isinstance(reason, (Fenced, StoreUnavailable)):
                    writer.failure = writer.failure or reason
                elif isinstance(reason, str):
                    cause = reason
                    if on_stop is not None:
                        on_stop(reason)
                scope.cancel()

            unwatch = self._watch(lease, stop)
            try:
                with self.shutdown.ending(scope) if self.shutdown else nullcontext():
                    await self._produce(writer, produce)
            finally:
                unwatch()
        return await self._end(writer, cause)

    def _watch(self, lease: Lease, stop: OnStop) -> Unwatch:
        try:
            return self.store.watch_stop(lease, stop)
        except (Fenced, StoreUnavailable) as exc:
            stop(exc)
            return lambda: None

    @staticmethod
    async def _produce(writer: Writer, produce: Produce) -> None:
        if not writer.batched:
            await produce(writer.emit)
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(writer.send_batches)
            await produce(writer.emit)
            tasks.cancel_scope.cancel()

    async def _end(self, writer: Writer, cause: StopCause | None) -> str | None:
        if writer.finished:
            return None
        if writer.failure is not None:
            log.warning("stream %s… ended without its terminate: %s", writer.lease.sid[:6], writer.failure.type)
            self._count_failure(writer)
            return "error"
        try:
            if cause is not None:
                await writer.finish(cancelled_payload(cause))
                return "cancelled"
            await writer.finish(terminate_payload("shutdown"))
            return "shutdown"
        finally:
            if writer.failure is not None:
                log.warning("stream %s…: its terminate was not stored: %s", writer.lease.sid[:6], writer.failure.type)
                self._count_failure(writer)

    def _count_failure(self, writer: Writer) -> None:
        self.on_store_failure("fenced" if isinstance(writer.failure, Fenced) else "unavailable")
