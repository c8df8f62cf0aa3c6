"""The HTTP clients the proxy gives the adapters that speak HTTP (one per model; the proxy closes them),
and how a streamed request is sent on them.

The clients are the openai SDK's httpx2 client on its aiohttp transport. A request is handed to that
transport directly: the client's own layers (auth, redirects, cookies, event hooks, a stream wrapper) do
nothing the proxy uses; with the 17 headers converted per request they cost 5–7% of a 1-chunk stream's CPU
(issue 13; docs/performance.md). The response is the httpx2 `Response` the transport makes, and aiohttp's
errors are mapped to httpx2's as the transport maps them.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from contextvars import ContextVar

import aiohttp
import httpx2
import openai
import yarl
from multidict import CIMultiDict, CIMultiDictProxy
from openai._vendor.httpx_aiohttp.transport import AiohttpResponseStream, AiohttpTransport, map_aiohttp_exceptions

# Headers to add to the upstream requests sent in this context: the trace context (W3C `traceparent`) of the
# attempt under way when tracing is on (proxy/telemetry/tracing.py), else None, which costs one lookup a request.
UPSTREAM_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("upstream_headers", default=None)

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
        client = openai.DefaultAioHttpClient(
            timeout=httpx2.Timeout(connect=timeout, read=None, write=timeout, pool=timeout),
            limits=httpx2.Limits(max_connections=UNCAPPED, max_keepalive_connections=1000),
            follow_redirects=False,
            verify=self._tls,
        )
        transport = aiohttp_transport(client)
        if transport is not None:
            transport.client = functools.partial(cookieless_session, transport)
        return client


def cookieless_session(transport: AiohttpTransport) -> aiohttp.ClientSession:
    """The aiohttp session the transport would make, without a cookie jar (issue 26).

    One client serves every user of a model: a jar would send the cookie an upstream set for one user
    (a session, a load balancer's affinity) with every other user's requests. The transport calls this
    on its first request, inside the running loop, as it would build its own.
    """
    limits = transport.limits
    connector = aiohttp.TCPConnector(keepalive_timeout=limits.keepalive_expiry, ssl=transport.ssl_context,
                                     limit=limits.max_connections or 0)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def aiohttp_transport(http: httpx2.AsyncClient) -> AiohttpTransport | None:
    """The client's transport if it is the SDK's aiohttp one (the proxy's clients); None for any other
    (a test's MockTransport, httpx2's own), which gets its requests through the client."""
    transport = http._transport  # the client's own, made with it (HttpClients.new)
    return transport if isinstance(transport, AiohttpTransport) else None


async def send_streamed(http: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
    """`http.send(request, stream=True)`, without the client's layers on the aiohttp transport."""
    extra = UPSTREAM_HEADERS.get()
    if extra:
        request.headers.update(extra)
    transport = aiohttp_transport(http)
    if transport is None:
        return await http.send(request, stream=True)
    return await transport.handle_async_request(request)


class AiohttpSend:
    """What `AiohttpTransport.handle_async_request` does for one prepared request whose body alone changes
    (adapters/openai_endpoint.py), its arguments converted once instead of per request."""

    __slots__ = ("_transport", "_request", "_url", "_headers", "_timeout")

    def __init__(self, transport: AiohttpTransport, template: httpx2.Request, headers: httpx2.Headers) -> None:
        """`headers`: all but the Content-Length, which aiohttp sets for each body."""
        timeout = template.extensions.get("timeout", {})
        self._transport, self._request = transport, template
        self._url = yarl.URL(str(template.url))
        self._headers = CIMultiDictProxy(CIMultiDict(headers.multi_items()))
        self._timeout = aiohttp.ClientTimeout(sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                                              connect=timeout.get("pool"))

    async def send(self, content: bytes) -> httpx2.Response:
        """The response to a POST of `content`; the caller closes it."""
        transport = self._transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()  # as the transport does on its first request
        extra = UPSTREAM_HEADERS.get()
        headers = self._headers if not extra else CIMultiDict(self._headers, **extra)
        with map_aiohttp_exceptions():
            upstream = await transport.client.request(
                "POST", self._url, headers=headers, data=content, allow_redirects=False,
                auto_decompress=False, compress=False, timeout=self._timeout)
        extensions = {"http_version": b"HTTP/1.1"}
        if upstream.reason:
            extensions["reason_phrase"] = upstream.reason.encode()
        return httpx2.Response(upstream.status, headers=upstream.raw_headers, stream=AiohttpResponseStream(upstream),
                               request=self._request, extensions=extensions)
