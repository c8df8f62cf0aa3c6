"""uvicorn's httptools protocol, with limits on what a connection may cost before it is a request.

uvicorn bounds none of this (0.54, read in its source): httptools keeps every header line of a request
head, however many (a client sending `a: b` lines grew the process by ~20 bytes per byte sent), a
connection may send nothing, or half a head, for ever, and `limit_concurrency` refuses only after a
whole head has arrived, counting streams as well. So, per connection:

- the head (request line and headers) is capped in bytes and in header lines: over either, 431;
- the head must be complete within `head_timeout` of the connection (or of the next request's first
  byte), and the body within `body_timeout` of the head: 408, or a silent close for a connection
  that never sent a byte (a browser's preconnect);
- past `max_connections` open connections, a new one gets 503 and is closed at once.

Between requests, uvicorn's own keep-alive timeout closes idle connections. Answers here are the
app's JSON error shape; they are written straight to the transport, as no request ever reached the app.
Nothing here runs per response chunk: the streaming path is uvicorn's, untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from llm_sse_proxy.proxy.config import Config

HEADER_OVERHEAD = 4  # ": " and CRLF around each header line, as counted on the wire
STREAM_QUERY = b"/stream?"  # the start of a GET /stream URL that carries a prompt
log = logging.getLogger("llm_sse_proxy.connections")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    max_headers: int
    head_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_config(cls, config: Config) -> ConnectionLimits:
        server = config.server
        max_connections = server.max_connections or config.limits.max_streams + 1024
        return cls(server.max_header_bytes, server.max_headers, server.head_timeout, server.body_timeout,
                   max_connections)


class _HeadRefused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is already chosen."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer given below the app: its status and type (for the log line) and its bytes."""

    status: int
    type: str
    response: bytes

    @classmethod
    def of(cls, status: int, error_type: str, message: str, *extra: bytes) -> Refusal:
        return cls(status, error_type, error_response(status, error_type, message, *extra))


def error_response(status: int, error_type: str, message: str, *extra: bytes) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, with the app's JSON error body."""
    body = json.dumps({"error": {"type": error_type, "message": message}}).encode()
    head = [STATUS_LINE[status], b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
            *extra, b"connection: close\r\n\r\n"]
    return b"".join(head) + body


@dataclass(frozen=True, slots=True)
class _Answers:
    too_large: Refusal
    prompt_too_long: Refusal  # a GET /stream whose query (its prompt) is what went over the cap
    not_http: Refusal
    head_timeout: Refusal
    body_timeout: Refusal
    too_many_connections: Refusal

    @classmethod
    def for_limits(cls, limits: ConnectionLimits) -> _Answers:
        over = f"over {limits.max_header_bytes} bytes or {limits.max_headers} lines"
        return cls(
            Refusal.of(431, "headers_too_large", f"the request line and headers are {over}"),
            Refusal.of(431, "headers_too_large", f"the prompt is too long for GET /stream (the "
                       f"request line and headers are {over}); send it in the body of POST /chat"),
            Refusal.of(400, "invalid_request", "the request is not valid HTTP/1.1"),
            Refusal.of(408, "request_timeout", f"the request head did not arrive within {limits.head_timeout:g} s"),
            Refusal.of(408, "request_timeout", f"the request body did not arrive within {limits.body_timeout:g} s"),
            Refusal.of(503, "overloaded", "the proxy has too many open connections; try again shortly",
                       b"retry-after: 1\r\n"),
        )


def limited_protocol(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for one server: uvicorn builds it with its own arguments, so limits ride on the class."""
    attributes = {"limits": limits, "answers": _Answers.for_limits(limits)}
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), attributes)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ConnectionLimits
    answers: _Answers

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._awaiting_head = True  # no request, or the last one's body is complete
        self._head_bytes = 0  # received while awaiting the head, a header still being parsed included
        self._head_size = 0  # request line and complete headers, as parsed
        self._header_count = 0
        self._url_size = 0
        self._url_start = b""  # enough of the URL to tell a GET /stream (whose prompt is in it)
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: Refusal | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport  # connection_lost closes it; the connection is never counted
            self._answer(self.answers.too_many_connections)
            return
        super().connection_made(transport)
        self._arm(self.limits.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            if self._timer is None:  # the first byte of a request after keep-alive
                self._arm(self.limits.head_timeout, self._head_timed_out)
            self._head_bytes += len(data)
        self._feed(data)
        # A header still being parsed is not counted by the callbacks; httptools holds it whole.
        if self._awaiting_head and self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._answer(self._too_large())

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, but a parser error (ours, raised to stop parsing, or the client's) is
        answered and logged here: uvicorn would log "Invalid HTTP request received." for a 431 as well."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(self._refusal or self.answers.not_http)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        self._head_size = self._header_count = self._url_size = 0
        self._url_start = b""
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if len(self._url_start) < len(STREAM_QUERY):
            self._url_start = (self._url_start + url[:len(STREAM_QUERY)])[:len(STREAM_QUERY)]
        self._url_size += len(url)
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._count(len(name) + len(value) + HEADER_OVERHEAD)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._arm(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._awaiting_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.limits.max_header_bytes or self._header_count > self.limits.max_headers:
            self._refusal = self._too_large()
            raise _HeadRefused

    def _too_large(self) -> Refusal:
        """A GET /stream carries its prompt in the URL: when that is what went over, say how to send it."""
        url_is_most = self._url_size * 2 > self.limits.max_header_bytes
        if url_is_most and self._url_start == STREAM_QUERY:
            return self.answers.prompt_too_long
        return self.answers.too_large

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.cycle is None and self._head_bytes == 0:
            self.transport.close()  # a connection that never sent a byte: nothing to answer
        elif self.cycle is None or self.cycle.response_complete:
            self._answer(self.answers.head_timeout)
        else:
            self.transport.close()  # a response is under way on this connection: no room for an answer

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        self._answer(self.answers.body_timeout)
        # As if the connection were gone (uvicorn's own flag): the app's receive() gets http.disconnect
        # and its answer, if it still sends one, is dropped instead of following ours.
        cycle.disconnected = True
        cycle.message_event.set()

    def _answer(self, refusal: Refusal) -> None:
        self._disarm()
        self.transport.write(refusal.response)
        self.transport.close()
        # One line of our own per refusal: what and to whom, never what the client sent.
        client = self.transport.get_extra_info("peername")
        where = f"{client[0]}:{client[1]}" if isinstance(client, tuple) else "a client"
        log.info("answered %d %s to %s before its request reached the app", refusal.status, refusal.type, where)

    def _arm(self, seconds: float, expire: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
