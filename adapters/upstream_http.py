"""What every adapter that streams over httpx2 shares: the errors it maps, the keys it hides, and the
request loop of the native adapters (send, check the status, decode the body, drain it, close it).

An adapter brings two things of its own: how to build its request, and a `Decode` that turns the raw
body into deltas. Neither knows of the other's upstream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpx2
import orjson
from pydantic import AfterValidator, StringConstraints

from llm_sse_proxy.adapters import decompress
from llm_sse_proxy.adapters.connection_guard import ending_body_with_connection
from llm_sse_proxy.adapters.http_client import send_streamed
from llm_sse_proxy.adapters.redaction import Redactor
from llm_sse_proxy.proxy.deltas import Delta, Finish
from llm_sse_proxy.proxy.errors import (
    UpstreamError,
    UpstreamMalformed,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamTruncated,
    UpstreamUnavailable,
)

log = logging.getLogger("llm_sse_proxy.upstream")

RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx (Anthropic's 529 "overloaded" included)
DRAIN_SECONDS = 1.0
MAX_ERROR_BODY = 64 * 1024  # an error body is read whole to quote it; a bigger one is cut

# The vendored aiohttp transport maps most aiohttp errors to httpx2's, not all: a bad status line or an
# oversized header comes out as aiohttp's own ClientResponseError.
TRANSPORT_ERRORS = (httpx2.TransportError, aiohttp.ClientError)

Decode = Callable[[AsyncIterator[bytes]], AsyncIterator[Delta]]
RetryDelay = Callable[[Any, httpx2.Headers], "float | None"]


def _without_credentials(url: str) -> str:
    # aiohttp refuses a URL with user:password@ (a ValueError per request); say so once, at load. Never
    # echo the URL: its password would be in the message.
    if "@" in urlsplit(url).netloc:
        raise ValueError("user:password@ in the URL is not supported; put the key in api_key (or a header) "
                         "and write the URL without it")
    return url


BaseUrl = Annotated[str, StringConstraints(pattern=r"^https?://"), AfterValidator(_without_credentials)]
"""An upstream's base_url: http(s), and no credentials in it."""


def loads(data: str | bytes) -> Any:
    """json.loads, through orjson (3x faster) for all it accepts; it refuses lone surrogate escapes and NaN."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds from `retry-after-ms`, else `retry-after` (seconds); None when absent or odd."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP-date: rare from LLM APIs; fall back to our own backoff
        if seconds >= 0:
            return seconds
    return None


def error_message(body: Any) -> str | None:
    """The message of an error body in any dialect here: `{"error": {"message": ...}}` (OpenAI, Anthropic,
    Gemini, which Vertex wraps in a list) or `{"error": "..."}` (Ollama)."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) else None


def status_error(status: int, message: str, retry_delay: float | None = None,
                 request: httpx2.Request | None = None) -> UpstreamError:
    """An HTTP error status: retryable (408/409/429/5xx) or final. A 404 is most often a base_url
    without its /v1 (or a model name the upstream lacks): the call is logged, and the text says where to look."""
    text = f"the upstream answered {status}: {message}"
    if status == 404:
        text += "; check the model's base_url and model name"
        if request is not None:
            log.warning("the upstream answered 404 to %s %s: check the model's base_url", request.method,
                        url_without_secrets(request.url))
    error: UpstreamError
    if status in RETRYABLE_STATUS or status >= 500:
        error = UpstreamUnavailable(text, retry_after=retry_delay)
    else:
        error = UpstreamRejected(text)
    error.status = status
    return error


def url_without_secrets(url: httpx2.URL) -> str:
    """Scheme, host, port and path: no user:password, and no query (Gemini's ?key= and the like)."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def connection_error(exc: BaseException, url: httpx2.URL) -> UpstreamError:
    """Classify a failure before the response by its causes, not the wrapper's class: the aiohttp
    transport wraps a refused connection as httpx2.ConnectTimeout (and the SDK, in turn, as
    APITimeoutError). A socket error (refused, reset, DNS, TLS) means the upstream could not be
    reached; a broken reply (a bad status line, a close before the headers) that it broke.
    The upstream is named by host and port: which of a config's upstreams failed is the first question."""
    chain = causes(exc)
    if any(isinstance(cause, TimeoutError) for cause in chain):  # checked first: an OSError too
        return UpstreamTimeout(f"the upstream at {host_and_port(url)} did not answer in time")
    bare = len(chain) == 1  # no cause: the client could not send at all
    if bare or any(isinstance(cause, (OSError, httpx2.ConnectError)) for cause in chain):
        why = next((type(cause).__name__ for cause in chain if isinstance(cause, OSError)), type(chain[-1]).__name__)
        log.warning("cannot connect to the upstream at %s (%s): check the model's base_url and that it is up",
                    url_without_secrets(url), why)
        return UpstreamUnavailable(f"cannot connect to the upstream at {host_and_port(url)}")
    return UpstreamTruncated("the upstream connection broke before the answer was complete")


def host_and_port(url: httpx2.URL) -> str:
    """`host:port`, the scheme's port when the URL has none; never the user:password or the query."""
    port = url.port or {"https": 443, "http": 80}.get(url.scheme, 0)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{port}"


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and its explicit causes (`raise ... from`), which the SDK, the transport and aiohttp all set;
    not `__context__`, which is whatever was being handled at the time."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


async def drain(body: AsyncIterator[bytes]) -> None:
    """Read the rest of the body after the answer (normally just the chunked end, already received).

    A connection whose body was not read to its end cannot go back to the pool: without this, every
    stream opened a new upstream connection (a TCP handshake, and a TIME_WAIT socket). It runs after the
    Finish was yielded, so the terminate event is never delayed; an upstream that keeps the body open
    after its end marker costs at most DRAIN_SECONDS, then its connection is dropped as before.
    """
    with anyio.move_on_after(DRAIN_SECONDS):
        try:
            async for _ in body:
                pass
        except (*TRANSPORT_ERRORS, httpx2.HTTPError, httpx2.StreamError):
            pass  # the answer is complete; the connection is simply not reused


def raw_body(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body's bytes: raw when not encoded (aiter_bytes adds a generator step per read), gzip and
    deflate inflated in bounded steps (adapters/decompress.py), other encodings through httpx2."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return response.aiter_raw()
    if decompress.handles(encoding):
        return decompress.decoded(response.aiter_raw(), encoding)
    return response.aiter_bytes()


def check_media_type(response: httpx2.Response, expected: str) -> None:
    """A 200 that is not the stream asked for (a JSON completion, a captive portal's page) is a final
    answer: asking again would bill another completion. A missing content type gets the benefit of the doubt."""
    content_type = response.headers.get("content-type")
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() != expected:
        shown = content_type[:100].encode("ascii", "replace").decode()
        raise UpstreamMalformed(f"the upstream answered 200 with content-type {shown!r}, not {expected}")


async def cut_short(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body, with a broken connection after the headers raised as UpstreamTruncated."""
    try:
        async for raw in body:
            yield raw
    except TRANSPORT_ERRORS:  # the answer had begun: whatever broke the connection, it is cut short
        raise UpstreamTruncated("the upstream connection broke before the answer was complete") from None
    except httpx2.DecodingError:  # a content-encoding httpx2 decodes (br, zstd) was corrupt
        raise UpstreamMalformed("the upstream sent a body that does not decode") from None


async def stream_deltas(
    http: httpx2.AsyncClient,
    request: httpx2.Request,
    decode: Decode,
    redact: Redactor,
    retry_delay: RetryDelay | None = None,
    *,
    media_type: str,
) -> AsyncIterator[Delta]:
    """Send `request`, and yield the deltas `decode` finds in its body (which must be `media_type`); errors
    mapped, keys redacted."""
    try:
        response = await send_streamed(http, request)
        try:
            if response.status_code >= 400:
                raise await _status_error(response, retry_delay)
            check_media_type(response, media_type)
            body = raw_body(response)
            with ending_body_with_connection(response):
                async with aclosing(decode(cut_short(body))) as deltas:
                    async for delta in deltas:
                        try:
                            yield delta
                        finally:
                            if isinstance(delta, Finish):
                                await drain(body)
        finally:
            await response.aclose()
    except UpstreamError as exc:  # its text may quote the upstream, and so a key
        exc.message = redact(exc.message)
        raise
    except TRANSPORT_ERRORS as exc:
        raise connection_error(exc, request.url) from None


async def _status_error(response: httpx2.Response, retry_delay: RetryDelay | None) -> UpstreamError:
    raw = b""
    async for piece in response.aiter_bytes():
        raw += piece
        if len(raw) >= MAX_ERROR_BODY:
            break
    try:
        body = loads(raw)
    except ValueError:
        body = None
    message = error_message(body) or response.reason_phrase or "no error message"
    delay = retry_after(response.headers)
    if delay is None and retry_delay is not None:
        delay = retry_delay(body, response.headers)
    return status_error(response.status_code, message, delay, response.request)
