"""Upstream connection pools that stay cheap with thousands of open streams.

httpcore's pool scans every one of its connections each time a request starts and each time a
response closes (and probes each idle one's socket). One pool holding N open streams therefore costs
O(N) per stream, O(N²) to open N: with 10,000 slow streams the proxy spent its core opening them
(bench/: about 80 new streams/s at 3,500 open). Here requests fill the first pool up to FILL streams
in flight, then spill into the next, then go to the least busy: a few streams share one pool and its
keep-alive connections, as before, and 10,000 are spread over SHARDS pools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx2

SHARDS = 32
FILL = 64


class ShardedTransport(httpx2.AsyncBaseTransport):
    """Several connection pools behind one transport."""

    def __init__(self, limits: httpx2.Limits, shards: int = SHARDS) -> None:
        keepalive = limits.max_keepalive_connections
        per_shard = httpx2.Limits(
            max_connections=None if limits.max_connections is None else max(limits.max_connections // shards, 1),
            max_keepalive_connections=None if keepalive is None else max(keepalive // shards, FILL),
            keepalive_expiry=limits.keepalive_expiry,
        )
        tls = httpx2.create_ssl_context()  # one for all shards: each costs MBs and a CA bundle load
        self._pools = [httpx2.AsyncHTTPTransport(verify=tls, limits=per_shard) for _ in range(shards)]
        self._busy = [0] * shards  # responses in flight per pool

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        index = self._pick()
        self._busy[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            self._busy[index] -= 1
            raise
        response.stream = _Released(response.stream, lambda: self._release(index))  # type: ignore[arg-type]
        return response

    def _pick(self) -> int:
        busy = self._busy
        for index, count in enumerate(busy):
            if count < FILL:
                return index
        return busy.index(min(busy))

    def _release(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _Released(httpx2.AsyncByteStream):
    """The response body, unchanged; closing it tells the transport its pool has one stream less."""

    def __init__(self, stream: httpx2.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # the inner iterator itself: no extra step per read

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None
