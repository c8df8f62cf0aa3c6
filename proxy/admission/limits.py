"""Request limits: a token bucket per client, stream gates per client and for the whole proxy.

Every check answers at once: a client over its limit gets 429, a full proxy 503, both with
`Retry-After`. Nothing waits in a queue, so an overload costs the excess requests and nobody else.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from llm_sse_proxy.proxy.config import LimitsConfig
from llm_sse_proxy.proxy.deltas import Adapter, ChatRequest, Delta
from llm_sse_proxy.proxy.errors import Overloaded, PayloadTooLarge, TooManyRequests

Clock = Callable[[], float]
MAX_TRACKED_CLIENTS = 100_000
STREAM_RETRY_AFTER = 1  # seconds; streams end at their own pace, so this is a polite guess


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`requests_per_minute` per client, with bursts of up to `burst` requests."""

    def __init__(self, per_minute: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str) -> None:
        """Spend one request, or raise TooManyRequests with the seconds until the next one."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
            self._bound()
        else:
            self._buckets.move_to_end(client)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / self.rate)
            raise TooManyRequests(f"over {self.rate * 60:g} requests per minute", retry_after=max(1, wait))
        bucket.tokens -= 1

    def _bound(self) -> None:
        # A forgotten client starts with a full bucket again; dropping the least recent keeps memory
        # bounded against a flood of addresses at the cost of one extra burst for a quiet client.
        while len(self._buckets) > MAX_TRACKED_CLIENTS:
            self._buckets.popitem(last=False)


class StreamGates:
    """Counts open streams per client and in total; `enter` refuses instead of waiting."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self.open = 0
        self._by_client: dict[str, int] = {}

    def enter(self, client: str, limit: int | None = None) -> Callable[[], None]:
        """Take a slot, within `limit` for this client if lower than the usual; return the function that
        gives it back (call it exactly once)."""
        if self.open >= self.total:
            raise Overloaded("the proxy is at its stream limit; try again shortly", retry_after=STREAM_RETRY_AFTER)
        mine = self._by_client.get(client, 0)
        if mine >= min(self.per_client, limit or self.per_client):
            raise TooManyRequests(
                f"this client already has {mine} open streams", retry_after=STREAM_RETRY_AFTER, type_="too_many_streams"
            )
        self.open += 1
        self._by_client[client] = mine + 1
        released = False

        def leave() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]

        return leave


def check_size(request: ChatRequest, limits: LimitsConfig) -> None:
    """Refuse prompts over the message-count or character limits (413)."""
    if len(request.messages) > limits.max_messages:
        raise PayloadTooLarge(f"messages: more than {limits.max_messages} messages (limits.max_messages)",
                              param="messages")
    if sum(len(m.text) for m in request.messages) > limits.max_chars:
        raise PayloadTooLarge(f"messages: more than {limits.max_chars} characters in all (limits.max_chars)",
                              param="messages")


def cap_max_tokens(request: ChatRequest, cap: int | None) -> ChatRequest:
    """Clamp `max_tokens` to the model's cap, and set it when the client left it out."""
    if cap is None or (request.max_tokens is not None and request.max_tokens <= cap):
        return request
    return replace(request, max_tokens=cap)


class CappedAdapter:
    """An adapter whose requests are clamped to `cap` tokens. It hands back the inner adapter's own
    iterator, so the cap costs nothing per chunk."""

    def __init__(self, inner: Adapter, cap: int) -> None:
        self.inner = inner
        self.cap = cap

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        return self.inner.stream(cap_max_tokens(request, self.cap))
