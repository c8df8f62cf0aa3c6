"""The HTTP clients the proxy gives the adapters that speak HTTP (one per model; the proxy closes them)."""

from __future__ import annotations

import ssl

import httpx2
import openai

# Connections: every open stream holds one, and a cap would queue streams. Not None: the transport
# then leaves aiohttp's default cap of 100.
UNCAPPED = 1_000_000


class HttpClients:
    """Builds each model's client; they share one TLS context (each costs ~25 ms and a CA bundle load)."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._tls: ssl.SSLContext | None = None

    def new(self) -> httpx2.AsyncClient:
        """The openai SDK's httpx2 client on its aiohttp transport (the `openai[aiohttp]` extra).

        The same httpx2 API and SDK behaviour at about half the CPU per relayed chunk of httpx2's own
        transport (docs/performance.md). Most aiohttp errors arrive as httpx2's; the adapter catches
        the rest (openai_compat.TRANSPORT_ERRORS). Any adapter that speaks httpx2 can use it.
        """
        if self._tls is None:
            self._tls = httpx2.create_ssl_context()
        timeout = self.connect_timeout
        return openai.DefaultAioHttpClient(
            timeout=httpx2.Timeout(connect=timeout, read=None, write=timeout, pool=timeout),
            limits=httpx2.Limits(max_connections=UNCAPPED, max_keepalive_connections=1000),
            follow_redirects=False,
            verify=self._tls,
        )
