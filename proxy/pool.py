"""Upstream connection pools that stay cheap with thousands of open streams.

httpcore's pool scans every one of its connections each time a request starts and each time a
response closes (and probes each idle one's socket). One pool holding N open streams therefore costs
O(N) per stream, O(N²) to open N: with 10,000 slow streams the proxy spent its core opening them
(bench/: about 80 new streams/s at 3,500 open). Spreading requests round-robin over several pools
divides that scan by their number; keep-alive reuse works within each pool as before.
"""

from __future__ import annotations

import itertools

import httpx2

SHARDS = 32


class ShardedTransport(httpx2.AsyncBaseTransport):
    """`shards` connection pools behind one transport, taken in turn."""

    def __init__(self, limits: httpx2.Limits, shards: int = SHARDS) -> None:
        keepalive = limits.max_keepalive_connections
        per_shard = httpx2.Limits(
            max_connections=None if limits.max_connections is None else max(limits.max_connections // shards, 1),
            max_keepalive_connections=None if keepalive is None else max(keepalive // shards, 1),
            keepalive_expiry=limits.keepalive_expiry,
        )
        tls = httpx2.create_ssl_context()  # one for all shards: each costs MBs and a CA bundle load
        self._pools = [httpx2.AsyncHTTPTransport(verify=tls, limits=per_shard) for _ in range(shards)]
        self._turn = itertools.cycle(self._pools)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await next(self._turn).handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
