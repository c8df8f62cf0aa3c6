"""Any server that speaks OpenAI's chat-completions streaming API (wire-formats.md §1).

The official SDK prepares the request once per model (adapters/openai_endpoint.py: URL, auth, headers) and
raises the HTTP status errors; the body is read as raw bytes and decoded here, because the SDK's typed
per-chunk parsing costs about ten times more CPU than the relay itself, and because it ends silently on a
close without `[DONE]`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp
import anyio
import httpx2
import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from adapters.event_stream import MAX_EVENT, EventStreamDecoder
from adapters.openai_chunks import parse_chunk
from adapters.openai_endpoint import ChatCompletions
from adapters.openai_params import chat_params
from proxy.deltas import AdapterSpec, ChatRequest, Delta, Finish, TextDelta, Usage
from proxy.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamTruncated,
    UpstreamUnavailable,
)

RETRYABLE_STATUS = {408, 409, 429}
DRAIN_SECONDS = 1.0


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://")
    api_key: SecretStr = SecretStr("not-needed")  # keyless local servers still need a value
    model: str = Field(min_length=1)
    include_usage: bool = True  # a few older servers reject stream_options
    default_headers: dict[str, str] = {}  # e.g. Azure's api-key, OpenRouter's HTTP-Referer
    default_query: dict[str, str] = {}  # e.g. Azure's api-version
    max_event_bytes: int = Field(MAX_EVENT, ge=1024)  # a bigger upstream event ends the stream with an error


class OpenAICompatAdapter:
    def __init__(self, options: OpenAIOptions, *, http: httpx2.AsyncClient) -> None:
        self.options = options
        self._secret = options.api_key.get_secret_value()
        # Header and query values can be keys too (Azure's api-key, Gemini's ?key=).
        self._secrets = sorted({self._secret, *options.default_headers.values(), *options.default_query.values()},
                               key=len, reverse=True)
        self.client = openai.AsyncOpenAI(
            base_url=options.base_url,
            api_key=self._secret,
            http_client=http,
            timeout=http.timeout,
            max_retries=0,  # the proxy has one retry policy (tenacity, in proxy/relay.py)
            default_headers=options.default_headers or None,
            default_query=options.default_query or None,
        )
        self.chat = ChatCompletions(self.client, http)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        try:
            response = await self.chat.post(self._params(request))
            try:
                # Undecoded bytes when they are the body: aiter_bytes adds a generator step per read, for
                # a content-encoding that event streams rarely have.
                body = response.aiter_bytes() if "content-encoding" in response.headers else response.aiter_raw()
                async with aclosing(self._deltas(body)) as deltas:
                    async for delta in deltas:
                        try:
                            yield delta
                        finally:
                            if isinstance(delta, Finish):
                                await _drain(body)
            finally:
                await response.aclose()
        except UpstreamError as exc:  # from the body: an in-band error's text comes from the upstream
            exc.message = self.redact(exc.message)
            raise
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (openai.APIConnectionError, *TRANSPORT_ERRORS) as exc:  # APITimeoutError included
            raise self._connection_error(exc) from None
        except openai.OpenAIError as exc:  # the SDK's other errors: their text may quote the request
            raise UpstreamRejected(f"the upstream client failed: {type(exc).__name__}") from None

    async def _deltas(self, body: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
        decoder = EventStreamDecoder(self.options.max_event_bytes)
        finish_reason, usage = None, None
        try:
            async for raw in body:
                for _event, data in decoder.feed(raw):
                    chunk = parse_chunk(data)
                    if chunk.done:
                        yield _finish(finish_reason, usage)
                        return
                    if chunk.extras:
                        for extra in chunk.extras:
                            yield extra
                    if chunk.text:
                        yield TextDelta(chunk.text)
                    finish_reason = chunk.finish_reason or finish_reason
                    usage = chunk.usage or usage
        except TRANSPORT_ERRORS:  # the answer had begun: whatever broke the connection, it is cut short
            raise UpstreamTruncated("the upstream connection broke before the answer was complete") from None
        if finish_reason is None:
            raise UpstreamTruncated("the upstream closed the stream before the answer was complete")
        yield Finish(finish_reason, usage)  # a finish reason but no [DONE]: the answer is whole

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params = chat_params(self.options.model, request)
        if self.options.include_usage:
            params["stream_options"] = {"include_usage": True}
        return params

    def _status_error(self, exc: openai.APIStatusError) -> UpstreamError:
        status = exc.status_code
        message = self.redact(f"the upstream answered {status}: {_message_of(exc.body) or exc.message}")
        if _error_code(exc.body) == "insufficient_quota":
            return UpstreamRejected(message)  # a billing state, not a passing limit
        if status in RETRYABLE_STATUS or status >= 500:
            return UpstreamUnavailable(message, retry_after=retry_after(exc.response.headers))
        return UpstreamRejected(message)

    def _connection_error(self, exc: Exception) -> UpstreamError:
        """Classify a failure before the response by its causes, not the wrapper's class: the aiohttp
        transport wraps a refused connection as httpx2.ConnectTimeout (and the SDK, in turn, as
        APITimeoutError). A socket error (refused, reset, DNS, TLS) means the upstream could not be
        reached; a broken reply (a bad status line, a close before the headers) that it broke."""
        causes = _causes(exc)
        if any(isinstance(cause, TimeoutError) for cause in causes):  # checked first: an OSError too
            return UpstreamTimeout("the upstream did not answer in time")
        bare = len(causes) == 1  # an APIConnectionError with no cause: the SDK could not send at all
        if bare or any(isinstance(cause, (OSError, httpx2.ConnectError)) for cause in causes):
            return UpstreamUnavailable("cannot connect to the upstream")
        return UpstreamTruncated("the upstream connection broke before the answer was complete")

    def redact(self, text: str) -> str:
        """Upstream errors can quote the key (OpenAI's 401 does, masked): never pass it on."""
        for secret in self._secrets:
            if len(secret) >= 8:
                text = text.replace(secret, "[redacted]")
        return _KEYLIKE.sub("[redacted]", text)


# The vendored aiohttp transport maps most aiohttp errors to httpx2's, not all: a bad status line or an
# oversized header comes out as aiohttp's own ClientResponseError.
TRANSPORT_ERRORS = (httpx2.TransportError, aiohttp.ClientError)

_KEYLIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*.]{4,}")


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


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read the rest of the body after the answer (normally just the chunked end, already received).

    A connection whose body was not read to its end cannot go back to the pool: without this, every
    stream opened a new upstream connection (a TCP handshake, and a TIME_WAIT socket). It runs after the
    Finish was yielded, so the terminate event is never delayed; an upstream that keeps the body open
    after [DONE] costs at most DRAIN_SECONDS, then its connection is dropped as before.
    """
    with anyio.move_on_after(DRAIN_SECONDS):
        try:
            async for _ in body:
                pass
        except (*TRANSPORT_ERRORS, httpx2.HTTPError, httpx2.StreamError):
            pass  # the answer is complete; the connection is simply not reused


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and its explicit causes (`raise ... from`), which the SDK, the transport and aiohttp all set;
    not `__context__`, which is whatever was being handled at the time."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def _finish(finish_reason: str | None, usage: Usage | None) -> Finish:
    if finish_reason is None:
        raise UpstreamTruncated("the upstream ended the stream without a finish reason")
    return Finish(finish_reason, usage)


def _error_of(body: Any) -> Any:
    """The error inside an OpenAI-style body `{"error": {...}}`, or the body itself when it is bare."""
    return body.get("error", body) if isinstance(body, dict) else None


def _message_of(body: Any) -> str | None:
    error = _error_of(body)
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) else None


def _error_code(body: Any) -> str | None:
    error = _error_of(body)
    return (error.get("code") or error.get("type")) if isinstance(error, dict) else None


def build(options: OpenAIOptions, *, http: httpx2.AsyncClient | None = None, **_: Any) -> OpenAICompatAdapter:
    assert http is not None, "the proxy gives each OpenAI-compatible upstream its own client"
    return OpenAICompatAdapter(options, http=http)


SPEC = AdapterSpec(options=OpenAIOptions, build=build, uses_http=True)
