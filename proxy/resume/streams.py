"""Resumable streams as the HTTP layer sees them: start one, read one from a cursor, stop one.

Only the client that started a stream may read or stop it. The stream keeps an HMAC fingerprint of
the client's key id (never the key); a reader proves it holds the same key with `Authorization:
Bearer`, or, from an EventSource that cannot send headers, with the `?token=` its stream URL already
carries: on a resume the token's signature is checked, not its single use or expiry (it was spent on
starting this very stream, whose 128-bit id the reader must also present). Without client keys there
is no identity to bind to (an IP address changes exactly when a phone changes network), so the stream
id alone is the capability. Someone else's stream looks exactly like an unknown one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_sse_proxy.proxy.admission.auth import Authenticator, Client, client_of
from llm_sse_proxy.proxy.errors import Unauthorized
from llm_sse_proxy.proxy.doors.response import OnDone, Produce
from llm_sse_proxy.proxy.resume.errors import InvalidCursor, StreamNotFound
from llm_sse_proxy.proxy.resume.generations import Generations
from llm_sse_proxy.proxy.resume.ids import is_sid, parse_cursor, resume_after
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.resume.audience import Audience
from llm_sse_proxy.proxy.resume.reader import ReaderResponse
from llm_sse_proxy.proxy.resume.writer import EncodeFrame
from llm_sse_proxy.proxy.resume.readers import ReaderPlaces
from llm_sse_proxy.proxy.state.streams.store import StreamStatus, StreamStore
from llm_sse_proxy.proxy.state.limits import SharedLimits

RequestId = Callable[[Request], str]
OnResume = Callable[[str, int], None]  # a reader came back to a stream (its id, its cursor): a trace event
NO_STORE = {"cache-control": "no-store"}


class ResumableStreams:
    def __init__(
        self,
        store: StreamStore,
        generations: Generations,
        auth: Authenticator,
        limits: SharedLimits,
        *,
        ping_interval: float,
        send_timeout: float,
        request_id: RequestId,
        on_resume: OnResume | None = None,
        readers_per_stream: int = 8,
    ) -> None:
        self.store = store
        self.generations = generations
        self.auth = auth
        self.limits = limits
        self.places = ReaderPlaces(limits, readers_per_stream)
        self._audiences: dict[str, Audience] = {}  # the generations of this process, by stream id
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.request_id = request_id
        self.on_resume = on_resume

    async def start(self, request: Request, client: Client, produce: Produce, on_done: OnDone,
                    outcome: Outcome | None = None) -> Response:
        """Run `produce` as a generation of its own, and answer with its first reader. Its readers here are
        its `Audience`, which records in `outcome` whether the client left and what came of it."""
        audience = Audience(outcome if outcome is not None else Outcome())

        def done(ending: str | None) -> None:
            audience.settle(ending)
            self._audiences.pop(sid, None)
            on_done(ending)

        sid = await self.generations.start(self.owner_of(client), produce, done, on_stop=audience.stopped)
        self._audiences[sid] = audience
        leave, gone = self.places.first(sid), audience.attach()
        return self._reader(request, sid, 0, {"x-request-id": self.request_id(request)},
                            lambda ending: (leave(), gone(ending)))

    async def resume(self, request: Request, sid: str) -> Response:
        """GET /streams/{sid}: the events after the cursor, then live ones; 204 when there are none."""
        after = resume_after(sid, request.headers.get("last-event-id"), request.query_params.get("lastEventId"))
        client, status = await self._status_for(request, sid)
        if status is None or (status.state == "finished" and after >= status.last_seq):
            return self.no_stream(request)
        if self.on_resume is not None:
            self.on_resume(sid, after)
        leave = await self.places.enter(client, sid)
        audience = self._audiences.get(sid)  # None: generated elsewhere, or over
        gone = audience.attach() if audience is not None else None
        return self._reader(request, sid, after, self._headers(request),
                            lambda ending: (leave(), gone and gone(ending)))

    async def reconnect(self, request: Request) -> Response:
        """A request that carries Last-Event-ID (GET /stream, POST /chat): resume the stream it names.

        It never starts a new generation: that would bill the prompt again and repeat the text.
        """
        try:
            cursor = parse_cursor(request.headers["last-event-id"])
        except InvalidCursor:
            return self.no_stream(request)  # not one of our stream ids (a bare number from resume: off)
        if cursor.sid is None:
            return self.no_stream(request)
        return await self.resume(request, cursor.sid)

    async def start_named(self, client: Client, name: str, produce: Produce, on_done: OnDone,
                          encode: EncodeFrame) -> str:
        """Start a generation a door will find again by `name` (`find`), its frames written by `encode`."""
        owner = self.owner_of(client)
        return await self.generations.start(owner, produce, on_done, label=_label(owner, name), encode=encode)

    async def find(self, request: Request, name: str) -> StreamStatus | None:
        """The newest stream the asking client started under `name`, if it is kept; None otherwise."""
        owner = self.owner_of(await self._identify(request))
        sid = await self.store.labelled(_label(owner, name))
        status = await self.store.status(sid) if sid is not None else None
        if status is None or not hmac.compare_digest(status.owner, owner):
            return None
        return status

    def replay(self, request: Request, sid: str, headers: Mapping[str, str],
               gap_frame: Callable[[str, str], bytes]) -> Response:
        """A reader of the whole stream, from its first event, in the door's own frames."""
        return ReaderResponse(self.store, sid, 0, ping_interval=self.ping_interval, send_timeout=self.send_timeout,
                              headers={**self._headers(request), **headers, "x-stream-id": sid}, gap_frame=gap_frame)

    async def stop(self, request: Request, sid: str) -> Response:
        """POST /streams/{sid}/stop: cancel the generation now (202); say how it ended if it had (200)."""
        _, status = await self._status_for(request, sid)
        return await self.stop_stream(request, status)

    async def stop_stream(self, request: Request, status: StreamStatus | None) -> Response:
        """Stop the stream of `status` (one the asking client may stop), or raise StreamNotFound."""
        if status is None:
            raise StreamNotFound()
        sid = status.sid
        if status.state == "finished":
            return JSONResponse({"state": "finished", "reason": status.reason}, headers=self._headers(request))
        await self.store.request_stop(sid)
        return JSONResponse({"state": "stopping"}, status_code=202, headers=self._headers(request))

    def owner_of(self, client: Client) -> str:
        if not self.auth.enabled:
            return ""
        return self.auth.fingerprint(client.identity)

    def no_stream(self, request: Request) -> Response:
        # 204 is the one answer that makes EventSource stop reconnecting (WHATWG HTML 9.2.3).
        return Response(status_code=204, headers=self._headers(request))

    async def _status_for(self, request: Request, sid: str) -> tuple[Client, StreamStatus | None]:
        """Who asks, and the stream's status if it exists and belongs to them (None otherwise)."""
        client = await self._identify(request)
        if not is_sid(sid):
            return client, None
        status = await self.store.status(sid)
        if status is None or not hmac.compare_digest(status.owner, self.owner_of(client)):
            return client, None
        return client, status

    async def _identify(self, request: Request) -> Client:
        """Who asks, charged to its rate bucket (a reconnect loop is throttled like any request)."""
        client = await self.auth.identify(request.headers)
        token = request.query_params.get("token")
        if client is None and token is not None and self.auth.enabled:
            kid = self.auth.signed_key(token)
            client = client_of(kid) if kid is not None else None
        if client is None:
            client = Client(f"ip:{request.client.host if request.client else 'unknown'}", authenticated=False)
        await self.limits.take(client.identity)
        if self.auth.enabled and not client.authenticated:
            raise Unauthorized("send the key that started the stream as 'Authorization: Bearer <key>', "
                               "or the stream's ?token=")
        return client

    def _reader(self, request: Request, sid: str, after: int, headers: Mapping[str, str],
                on_done: OnDone) -> Response:
        return ReaderResponse(
            self.store, sid, after,
            ping_interval=self.ping_interval,
            send_timeout=self.send_timeout,
            headers={**headers, "x-stream-id": sid},
            for_event_source=request.method == "GET",
            on_done=on_done,
        )

    def _headers(self, request: Request) -> Mapping[str, str]:
        # no-store on every answer about an existing stream: a cache must never replay a 204 or a tail.
        return {**NO_STORE, "x-request-id": self.request_id(request)}


def _label(owner: str, name: str) -> str:
    """A door's name for a stream, bound to its owner: a client finds only its own (hashed: names are the client's)."""
    return hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()
