"""The chat-completions request, prepared once per model and sent with the model's own httpx2 client.

The SDK stays the source of truth: at start-up it builds one request, whose URL (base URL and default
query) and headers (auth, its own headers and the configured default headers) every request reuses;
and it turns an error response into its typed `APIStatusError`, and a failed send into
`APIConnectionError`/`APITimeoutError`, exactly as its own request path does. Per request only the body
changes. Going through the SDK's request path each time (options, copies, header merging, URL parsing)
cost about a quarter of a 1-chunk stream's CPU (issue 13's profile; docs/performance.md).

On the SDK's aiohttp transport (the proxy's clients) the request goes straight to the transport's aiohttp
session, its headers, URL and timeouts converted once (`AiohttpSend`, adapters/http_client.py): httpx2's
client layers and the per-request conversion of the 17 headers were 5–7% of a 1-chunk stream's CPU in two
A/Bs (issue 13; docs/performance.md). Any other transport (a test's MockTransport) gets the request through the client.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import anyio
import httpx2
import openai
import orjson
from openai._models import FinalRequestOptions

from llm_sse_proxy.adapters.http_client import AiohttpSend, aiohttp_transport

# What the SDK's request path wraps as APIConnectionError (openai/_httpx2.py, request_exceptions); the rest
# (aiohttp's own errors that the transport does not map) passes through, there as here.
SEND_ERRORS = (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream)


class ChatCompletions:
    """`post(params)` sends one streamed chat-completions request; the response is the caller's to close."""

    __slots__ = ("_sdk", "_http", "_template", "_headers", "_direct")

    def __init__(self, sdk: openai.AsyncOpenAI, http: httpx2.AsyncClient) -> None:
        template = sdk._build_request(FinalRequestOptions.construct(method="post", url="/chat/completions"))
        self._sdk, self._http = sdk, http
        # Its Host stays (the URL never changes); the Content-Length is each body's own.
        self._headers = httpx2.Headers([(k, v) for k, v in template.headers.raw if k.lower() != b"content-length"])
        # The request the SDK's errors name (a body-less copy: an error never quotes the prompt).
        self._template = httpx2.Request("POST", template.url, headers=self._headers, extensions=template.extensions)
        transport = aiohttp_transport(http)
        self._direct = AiohttpSend(transport, self._template, self._headers) if transport else None

    @property
    def url(self) -> httpx2.URL:
        return self._template.url

    async def post(self, params: dict[str, Any]) -> httpx2.Response:
        content = _dumps(params)
        try:
            if self._direct is not None:
                response = await self._direct.send(content)
            else:
                # Not the proxy's own clients (a test's MockTransport): the plain way, no speed-up needed.
                request = httpx2.Request("POST", self._template.url, headers=self._headers, content=content,
                                         extensions=self._template.extensions)
                response = await self._http.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=self._template) from exc
        except SEND_ERRORS as exc:
            raise openai.APIConnectionError(request=self._template) from exc
        if response.is_error:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise self._sdk._make_status_error_from_response(response) from None
        return response


def _dumps(params: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(params)
    except TypeError:  # a lone surrogate has no UTF-8 form: the JSON escape carries it, as the SDK's encoder does
        return json.dumps(params, separators=(",", ":")).encode()
