"""A hedged first token (issue 22; Dean and Barroso, "The Tail at Scale", CACM 2013).

If the attempt under way has sent nothing after `timeouts.hedge_after` seconds, the next candidate is
started beside it; the first to yield a delta wins and the other's read is cancelled at once, which
closes its connection (its adapter's `async with` unwinds). Only the winner's deltas go on to the
client, so only one stream ever reaches it. For an LLM the costly part is the tokens after the first,
so a hedge cancelled at the winner's first delta costs little.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from llm_sse_proxy.proxy.deltas import Delta
from llm_sse_proxy.proxy.errors import UpstreamError, UpstreamTruncated


@dataclass(frozen=True, slots=True, eq=False)
class Entrant:
    """One stream in the race, and what the relay knows it by (its attempt)."""

    deltas: AsyncIterator[Delta]
    tag: Any


@dataclass(frozen=True, slots=True)
class Won:
    delta: Delta
    entrant: Entrant
    losers: tuple[Entrant, ...]  # started, and cancelled when the winner's delta came


Result = tuple[Entrant, Delta | UpstreamError]


async def race(primary: Entrant, after: float, start_next: Callable[[], Awaitable[Entrant | None]],
               on_failure: Callable[[Entrant, UpstreamError, Entrant], None]) -> Won:
    """The first delta of `primary`, or of the entrant `start_next` starts after `after` silent seconds.

    A failure while the other is still running is handed to `on_failure` with the one left, which is
    waited for; the failure of the last one left is raised.
    """
    send, receive = anyio.create_memory_object_stream[Result](2)
    outcome: Delta | UpstreamError | None = None
    async with send, receive, anyio.create_task_group() as group:
        group.start_soon(_first, primary, send)
        pending, result = [primary], None
        with anyio.move_on_after(after):
            result = await receive.receive()
        if result is None and (second := await start_next()) is not None:
            group.start_soon(_first, second, send)
            pending.append(second)
        while True:
            entrant, outcome = result if result is not None else await receive.receive()
            result = None
            pending.remove(entrant)
            if not isinstance(outcome, UpstreamError):
                group.cancel_scope.cancel()  # the loser's read: its connection is closed now
                break
            if not pending:
                break
            on_failure(entrant, outcome, pending[0])
    if isinstance(outcome, UpstreamError):
        raise outcome  # out here: inside the task group it would come out wrapped in an ExceptionGroup
    assert outcome is not None
    return Won(outcome, entrant, tuple(pending))


async def _first(entrant: Entrant, send: MemoryObjectSendStream[Result]) -> None:
    outcome: Delta | UpstreamError
    try:
        outcome = await entrant.deltas.__anext__()
    except StopAsyncIteration:
        outcome = UpstreamTruncated("the upstream ended without finishing the answer")
    except UpstreamError as exc:
        outcome = exc
    send.send_nowait((entrant, outcome))  # room for both entrants: never waits
