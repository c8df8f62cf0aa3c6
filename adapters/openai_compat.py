"""Any server that speaks OpenAI's chat-completions streaming API (wire-formats.md §1).

The official SDK prepares the request once per model (adapters/openai_endpoint.py: URL, auth, headers) and
raises the HTTP status errors; the body is read as raw bytes and decoded here (adapters/openai_chunks.py),
because the SDK's typed per-chunk parsing costs about ten times more CPU than the relay itself, and
because it ends silently on a close without `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx2
import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llm_sse_proxy.adapters.connection_guard import ending_body_with_connection
from llm_sse_proxy.adapters.event_stream import MAX_EVENT, EventStreamDecoder
from llm_sse_proxy.adapters.openai_chunks import CONTENT_POLICY_CODES, parse_chunk
from llm_sse_proxy.adapters.openai_endpoint import ChatCompletions
from llm_sse_proxy.adapters.openai_params import chat_params
from llm_sse_proxy.adapters.upstream_http import (
    TRANSPORT_ERRORS,
    BaseUrl,
    Redactor,
    check_media_type,
    connection_error,
    drain,
    error_message,
    raw_body,
    retry_after,
    status_error,
)
from llm_sse_proxy.proxy.deltas import AdapterSpec, ChatRequest, Delta, Finish, MalformedChunk, TextDelta, Usage
from llm_sse_proxy.proxy.errors import (
    ContentPolicyRejected, UpstreamError, UpstreamMalformed, UpstreamRejected, UpstreamTruncated,
)

MAX_FINISH_REASON = 64  # finish reasons are short identifiers: a longer one, or an object, is not one


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl
    api_key: SecretStr = SecretStr("not-needed")  # keyless local servers still need a value
    model: str = Field(min_length=1)
    include_usage: bool = True  # a few older servers reject stream_options
    default_headers: dict[str, str] = {}  # e.g. Azure's api-key, OpenRouter's HTTP-Referer
    default_query: dict[str, str] = {}  # e.g. Azure's api-version
    max_event_bytes: int = Field(MAX_EVENT, ge=1024)  # a bigger upstream event ends the stream with an error


class OpenAICompatAdapter:
    def __init__(self, options: OpenAIOptions, *, http: httpx2.AsyncClient) -> None:
        self.options = options
        secret = options.api_key.get_secret_value()
        # Header and query values can be keys too (Azure's api-key, Gemini's ?key=).
        self.redact = Redactor([secret, *options.default_headers.values(), *options.default_query.values()])
        self.client = openai.AsyncOpenAI(
            base_url=options.base_url,
            api_key=secret,
            http_client=http,
            timeout=http.timeout,
            max_retries=0,  # the proxy has one retry policy (tenacity, in proxy/relay/relay.py)
            default_headers=options.default_headers or None,
            default_query=options.default_query or None,
        )
        self.chat = ChatCompletions(self.client, http)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        try:
            response = await self.chat.post(self._params(request))
            try:
                check_media_type(response, "text/event-stream")
                body = raw_body(response)
                with ending_body_with_connection(response):
                    async with aclosing(self._deltas(body)) as deltas:
                        async for delta in deltas:
                            try:
                                yield delta
                            finally:
                                if isinstance(delta, Finish):
                                    await drain(body)
            finally:
                await response.aclose()
        except UpstreamError as exc:  # from the body: an in-band error's text comes from the upstream
            exc.message = self.redact(exc.message)
            raise
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (openai.APIConnectionError, *TRANSPORT_ERRORS) as exc:  # APITimeoutError included
            raise connection_error(exc, self.chat.url) from None
        except openai.OpenAIError as exc:  # the SDK's other errors: their text may quote the request
            raise UpstreamRejected(f"the upstream client failed: {type(exc).__name__}") from None

    async def _deltas(self, body: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
        decoder = EventStreamDecoder(self.options.max_event_bytes)
        finish_reason, usage = None, None
        try:
            async for raw in body:
                for _event, data in decoder.feed(raw):
                    try:
                        chunk = parse_chunk(data)
                    except UpstreamMalformed as exc:  # one bad chunk: the proxy decides (faults.on_malformed_chunk)
                        yield MalformedChunk(exc.message)
                        continue
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
        except httpx2.DecodingError:  # a content-encoding httpx2 decodes (br, zstd) was corrupt
            raise UpstreamMalformed("the upstream sent a body that does not decode") from None
        if finish_reason is None:
            raise UpstreamTruncated("the upstream closed the stream before the answer was complete")
        yield _finish(finish_reason, usage)  # a finish reason but no [DONE]: the answer is whole

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params = chat_params(self.options.model, request)
        if self.options.include_usage:
            params["stream_options"] = {"include_usage": True}
        return params

    def _status_error(self, exc: openai.APIStatusError) -> UpstreamError:
        status = exc.status_code
        message = self.redact(error_message(exc.body) or exc.message)
        if _error_code(exc.body) == "insufficient_quota":  # a billing state, not a passing limit
            return UpstreamRejected(f"the upstream answered {status}: {message}")
        if _error_code(exc.body) in CONTENT_POLICY_CODES:
            return ContentPolicyRejected(f"the upstream's content policy refused it: {message}")
        return status_error(status, message, retry_after(exc.response.headers), exc.response.request)


def _finish(finish_reason: Any, usage: Usage | None) -> Finish:
    """The Finish, once per stream: the finish reason is checked here rather than in every chunk."""
    if finish_reason is None:
        raise UpstreamTruncated("the upstream ended the stream without a finish reason")
    if type(finish_reason) is not str or len(finish_reason) > MAX_FINISH_REASON:
        raise UpstreamMalformed("the upstream sent a finish_reason that is not a short string")
    return Finish(finish_reason, usage)


def _error_of(body: Any) -> Any:
    """The error inside an OpenAI-style body `{"error": {...}}`, or the body itself when it is bare."""
    return body.get("error", body) if isinstance(body, dict) else None


def _error_code(body: Any) -> str | None:
    error = _error_of(body)
    return (error.get("code") or error.get("type")) if isinstance(error, dict) else None


def build(options: OpenAIOptions, *, http: httpx2.AsyncClient | None = None, **_: Any) -> OpenAICompatAdapter:
    assert http is not None, "the proxy gives each OpenAI-compatible upstream its own client"
    return OpenAICompatAdapter(options, http=http)


SPEC = AdapterSpec(options=OpenAIOptions, build=build, uses_http=True, takes=frozenset(
    {"presence_penalty", "frequency_penalty", "seed", "response_format", "parallel_tool_calls", "logit_bias"}))
# (all of proxy.deltas.OPTIONAL_FIELDS)
