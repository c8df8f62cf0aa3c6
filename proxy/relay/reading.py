"""Reading deltas under a deadline: the next one (an end without `Finish` is a truncation), and a recovery's
seam (the continuation's first characters, to splice onto the text already sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from llm_sse_proxy.proxy.deltas import Delta, Finish, MalformedChunk, ReasoningDelta, TextDelta
from llm_sse_proxy.proxy.errors import UpstreamTruncated
from llm_sse_proxy.proxy.relay.deadline import ReadDeadline
from llm_sse_proxy.proxy.relay.splice import MAX_ECHO


async def next_delta(deltas: AsyncIterator[Delta]) -> Delta:
    try:
        return await deltas.__anext__()
    except StopAsyncIteration:
        raise UpstreamTruncated("the upstream ended without finishing the answer") from None


async def read_seam(delta: Delta, deltas: AsyncIterator[Delta], deadline: ReadDeadline, *, idle: float,
                    silent: str, skip: Callable[[MalformedChunk], None]) -> tuple[str, Delta | None]:
    """The continuation's first MAX_ECHO characters or more (or all of it, if shorter), and the delta that
    followed them: None when the seam is full and the next delta is still to be read. Reasoning before
    the seam is not relayed (the client is mid-answer); a tool call or a refusal ends the seam."""
    pieces, size = [], 0
    while not isinstance(delta, Finish):
        if isinstance(delta, TextDelta):
            pieces.append(delta.text)
            size += len(delta.text)
            if size >= MAX_ECHO:
                return "".join(pieces), None
        elif isinstance(delta, MalformedChunk):
            skip(delta)
        elif not isinstance(delta, ReasoningDelta):
            break
        deadline.arm(idle, silent)
        delta = await next_delta(deltas)
        deadline.pause()
    return "".join(pieces), delta
