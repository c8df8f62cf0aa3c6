"""A fast mock of OpenAI's streaming chat-completions API, with faults chosen per request.

Run ``python -m llm_sse_proxy.mock_upstream --port 9000`` (or ``llm-sse-proxy mock-upstream``) and point any
OpenAI client at ``http://127.0.0.1:9000/v1`` with any API key. Tests serve ``create_mock_upstream_app(recorder)``
over real HTTP; the ``Recorder`` says what it saw. Endpoints: ``POST /v1/chat/completions`` (streamed when
``"stream": true``, else one JSON reply; 401 without ``Authorization: Bearer ...``) and ``GET /v1/models``.

The reply is ``default_reply`` unless the last user message starts with ``echo:``: then it is the rest of
that message, verbatim. It is sent in chunks of 5 code points; ``max_tokens`` counts one chunk as one token
and cuts the reply with ``finish_reason: "length"``.

Options, given either as headers ``x-mock-<name>: value`` (``-`` and ``_`` are the same in names) or, for
clients that cannot set headers, as a model-name suffix ``name+opt=value+opt=value``, e.g.
``gpt+fail=2:503+retry_after=1``. Headers win over the suffix. Unknown options give a 400.

- ``fail=N:STATUS``: the first N attempts for this key get STATUS (default 503) and an OpenAI error body.
  ``retry_after=S`` / ``retry_after_ms=MS`` add ``Retry-After`` / ``retry-after-ms``; ``error_type=T`` sets
  the error's ``type`` and ``code`` (e.g. ``insufficient_quota``).
- ``cycle=M``: with ``fail``, the count restarts every M attempts (M > N), so each run of M starts with N failures.
- ``key=K``: the counter ``fail`` uses (default: the model name as sent), so tests can count apart.
- ``drop_after=K``: K content chunks, then the TCP connection closes mid-body (incomplete chunked read).
- ``close_after=K``: K content chunks, then a clean end of the HTTP body: no finish chunk, no ``[DONE]``.
- ``stall_after=K``: K content chunks, then silence until the client goes away.
- ``malformed_after=K``: K content chunks, then ``data: {not json``, then the rest of the stream.
- ``error_after=K``: K content chunks, then ``data: {"error": {...}}`` and ``data: [DONE]``.
- ``big_after=K``: K content chunks, then one content chunk of ``big_bytes`` characters (default 8 MiB), then
  the rest of the stream.
- ``endless_after=K``: K content chunks, then a ``data:`` line that never ends (64 KiB writes, up to 256 MiB).
- ``unended_after=K``: K content chunks, then short ``data:`` lines that never end the event: no blank line
  (64 KiB writes, up to 256 MiB).
- ``fieldless_after=K``: K content chunks, then a JSON chunk without ``choices``, then the rest of the stream.
- ``echo_key=1``: a ``fail`` error message quotes the bearer key, as careless servers do (OpenAI's 401 quotes
  it masked), so tests can check that the proxy never passes it on.
- ``delay_ms=MS`` before each content chunk; ``first_delay_ms=MS`` before the first one instead (headers
  and the role chunk go out at once).
- ``chunk_chars=N``: code points per content chunk.
- ``gzip=1``: the body gzip-compressed (``content-encoding: gzip``), flushed after every event.
- Hostile and odd bodies (a BOM, a 200 that is not an event stream, gzip bombs, broken framing...): see
  ``mock_upstream/faults.py``; a provider's ``rpm`` quota and a silent hang-up: ``mock_upstream/limits.py``.

A ``*_after`` fault with K beyond the reply's length fires after the last content chunk. Reasoning,
tool calls and refusals: see ``mock_upstream.openai_rich``; continuations (a trailing assistant
message), ``fault_attempts`` and ``malformed_times``: ``mock_upstream.continuation``.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
import zlib
from typing import Any

import anyio
import anyio.lowlevel
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm_sse_proxy.mock_upstream import continuation, faults, limits
from llm_sse_proxy.mock_upstream.openai_rich import RichDeltas, rich_deltas
from llm_sse_proxy.mock_upstream.plan import Plan, make_plan, parse_options, reply_text
from llm_sse_proxy.mock_upstream.options_help import options_epilog
from llm_sse_proxy.mock_upstream.recorder import Attempt, Recorder

DEFAULT_REPLY = "Hello! This is the mock upstream, streaming a short canned reply one small chunk at a time."
MODELS = ("mock-gpt", "mock-gpt-mini")
_FIELDLESS = b'data: {"id":"chatcmpl-fieldless","object":"chat.completion.chunk"}\n\n'
_ENDLESS_HEAD = b'data: {"choices":[{"index":0,"delta":{"content":"'
_ENDLESS_BYTES = 256 << 20
_DONE = b"data: [DONE]\n\n"
_MALFORMED = b"data: {not json\n\n"
_MIDSTREAM_ERROR = (b'data: {"error":{"message":"The server had an error while processing your request '
                    b'(mock error_after).","type":"server_error","param":null,"code":null}}\n\n')
_TRANSPORT = "mock_upstream.transport"  # scope key: uvicorn's transport, for drop_after


def _error(status: int, message: str, type_: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    if type_ is None:
        type_ = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
        code = code or ("rate_limit_exceeded" if status == 429 else None)
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status, headers=headers)


def _usage(body: dict, completion: int) -> dict:
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", ()) if isinstance(m, dict))
    prompt = max(1, chars // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": 0}}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class _Events:
    """Every SSE event of one stream, pre-encoded, so the send loop does no JSON work."""

    def __init__(self, model: str, pieces: list[str], finish: str, usage: dict | None, rich: RichDeltas) -> None:
        head = 'data: {"id":"chatcmpl-%s","object":"chat.completion.chunk","created":%d,"model":%s,"choices":[' % (
            uuid.uuid4().hex[:24], int(time.time()), _dumps(model))
        tail = ',"finish_reason":null}]}\n\n'
        self.role = (head + '{"index":0,"delta":{"role":"assistant","content":""}' + tail).encode()
        self._head, self._tail = head, tail
        self.content = [self.content_chunk(p) for p in pieces]
        if rich.instead is not None:
            self.content = [self.delta_chunk(d) for d in rich.instead]
        self.before, self.after = [self.delta_chunk(d) for d in rich.before], [self.delta_chunk(d) for d in rich.after]
        self.finish = (head + '{"index":0,"delta":{},"finish_reason":"%s"}]}\n\n' % finish).encode()
        self.usage = (head + '],"usage":' + _dumps(usage) + "}\n\n").encode() if usage else None

    def content_chunk(self, text: str) -> bytes:
        return (self._head + '{"index":0,"delta":{"content":' + _dumps(text) + "}" + self._tail).encode()

    def delta_chunk(self, delta: dict) -> bytes:
        return (self._head + '{"index":0,"delta":' + _dumps(delta) + self._tail).encode()


class _ClosingStream(StreamingResponse):
    # Close the body generator even when the send was cancelled mid-yield, so its `finally` records
    # the close now rather than at garbage collection (streaming-pitfalls 1.2 / 1.6).
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


class _Dropped(Exception):
    """Raised to make the server cut the connection when the transport is not reachable."""


async def _drop(transport: Any) -> None:
    if transport is None or transport.is_closing():
        raise _Dropped("drop_after")  # any ASGI server closes the connection mid-body on an app error
    # close() (not abort()) flushes the chunks already written, then sends FIN with the chunked body
    # unterminated: the client reads K chunks and then "incomplete chunked read". abort() could discard
    # buffered chunks, and an RST can make the client's kernel drop data it has not read yet.
    transport.close()
    with anyio.move_on_after(5):
        await anyio.sleep_forever()  # Starlette's disconnect listener cancels us as soon as uvicorn notices
    raise _Dropped("drop_after")


async def _body(attempt: Attempt, ev: _Events, plan: Plan, transport: Any):
    try:
        yield ev.role
        for piece in ev.before:
            await anyio.sleep(plan.delay)
            yield piece
        n = len(ev.content)
        k = min(plan.fault_at, n) if plan.fault else -1
        for i in range(n + 1):
            if i == k:
                attempt.fault = plan.fault
                if plan.fault in _CARRY_ON:
                    async for piece in _CARRY_ON[plan.fault](ev, plan):
                        yield piece
                else:
                    if plan.fault == "error_after":
                        yield _MIDSTREAM_ERROR
                        yield _DONE
                    elif plan.fault == "stall_after":
                        await anyio.sleep_forever()  # cancelled by Starlette when the client disconnects
                    elif plan.fault == "drop_after":
                        await _drop(transport)  # never returns
                    return  # close_after ends here: a clean HTTP end without finish chunk or [DONE]
            if i == n:
                break
            delay = plan.first_delay if i == 0 and plan.first_delay is not None else plan.delay
            if delay:
                await anyio.sleep(delay)  # also cancelled at once by a disconnect
            yield ev.content[i]
            attempt.chunks_sent += 1
        for piece in ev.after:
            yield piece
        yield ev.finish
        if ev.usage:
            yield ev.usage
        yield _DONE
        attempt.finished = True
    finally:
        attempt.closed_at = time.monotonic()


async def _big(ev: _Events, plan: Plan):
    yield ev.content_chunk("x" * plan.big_bytes)


async def _endless(ev: _Events, plan: Plan):
    yield _ENDLESS_HEAD
    piece = b"x" * 65536
    for _ in range(_ENDLESS_BYTES // len(piece)):
        await anyio.lowlevel.checkpoint()  # a send to a gone client does not wait: let the disconnect in
        yield piece


async def _unended(ev: _Events, plan: Plan):
    lines = b"data: x\n" * 8192
    for _ in range(_ENDLESS_BYTES // len(lines)):
        await anyio.lowlevel.checkpoint()
        yield lines


async def _one(data: bytes):
    yield data


_CARRY_ON = {  # faults after which the stream goes on, if the client is still there
    "malformed_after": lambda ev, plan: _one(_MALFORMED * plan.malformed_times),
    "fieldless_after": lambda ev, plan: _one(_FIELDLESS),
    "big_after": _big,
    "endless_after": _endless,
    "unended_after": _unended,
}


def _completion(model: str, text: str, finish: str, usage: dict) -> dict:
    message = {"role": "assistant", "content": text, "refusal": None}
    return {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage}


def _reject(attempt: Attempt, response: JSONResponse, fault: str | None = None) -> JSONResponse:
    attempt.status, attempt.fault, attempt.closed_at = response.status_code, fault, time.monotonic()
    return response


def _scripted_failure(plan: Plan, opts: dict[str, str], n: int, bearer: str) -> JSONResponse:
    names = (("retry-after", "retry_after"), ("retry-after-ms", "retry_after_ms"))
    headers = {header: opts[option] for header, option in names if option in opts}
    err = opts.get("error_type")
    message = f"Mock failure {n} of {plan.fail} for key {plan.key!r}."
    if opts.get("echo_key"):
        message = f"Incorrect API key provided: {faults.key_echo(bearer, opts['echo_key'])}. You can find your API key in your account settings."
    return _error(plan.status, message, err, err, headers)


def _parse_body(raw: bytes) -> dict | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    ok = isinstance(body, dict) and isinstance(body.get("model"), str) and isinstance(body.get("messages"), list)
    return body if ok else None


async def chat_completions(request: Request) -> Response:
    recorder: Recorder = request.app.state.recorder
    try:
        body = _parse_body(await request.body())  # read here: never inside the generator (pitfalls 1.4)
    except ClientDisconnect:
        return Response(status_code=499)  # the client gave up before it finished sending; nobody reads this
    attempt = Attempt((body or {}).get("model", ""), body or {}, dict(request.headers))
    recorder.attempts.append(attempt)
    if not request.headers.get("authorization", "").startswith("Bearer "):
        return _reject(attempt, _error(401, "Missing bearer authentication in header", code="invalid_api_key"))
    if body is None:
        return _reject(attempt, _error(400, "Body must be JSON with a string 'model' and a list 'messages'."))
    try:
        model, opts = parse_options(attempt.model, request.headers)
        opts = {**request.app.state.options, **opts}  # the server's own defaults lose to the request's
        plan = make_plan(attempt.model, opts)
        rich = rich_deltas(opts, plan.chunk_chars)
    except ValueError as exc:
        return _reject(attempt, _error(400, f"bad mock option: {exc}"))
    attempt.key = plan.key
    transport = request.scope.get(_TRANSPORT)
    if (refusal := await limits.before_answer(opts, plan.key, request.app.state, transport, attempt)) is not None:
        return refusal
    if (n := recorder._try(plan.key, plan.cycle)) <= plan.fail:
        return _reject(attempt, _scripted_failure(plan, opts, n, request.headers.get("authorization", "").removeprefix("Bearer ")), f"fail:{plan.status}")
    if not continuation.fault_fires(opts, n, plan.fail):
        plan.fault = None
    try:
        text = continuation.reply(body, reply_text(body, request.app.state.default_reply), opts)
    except continuation.PrefillRejected as exc:
        return _reject(attempt, _error(400, str(exc)), "prefill")
    except ValueError as exc:
        return _reject(attempt, _error(400, f"bad mock option: {exc}"))
    pieces = [text[i : i + plan.chunk_chars] for i in range(0, len(text), plan.chunk_chars)]
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if isinstance(limit, int) and len(pieces) > limit:
        pieces, finish = pieces[:limit], "length"
    usage = _usage(body, len(pieces))
    if body.get("stream") is not True:
        attempt.finished, attempt.closed_at = True, time.monotonic()
        return JSONResponse(_completion(model, "".join(pieces), finish, usage))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if (page := faults.not_an_event_stream(opts, _completion(model, "".join(pieces), finish, usage))) is not None:
        attempt.finished, attempt.closed_at, attempt.fault = True, time.monotonic(), "not_sse"
        return page
    finish = "tool_calls" if rich.after and finish == "stop" else finish
    events = _Events(model, pieces, finish, usage if include_usage else None, rich)
    faults.alter_events(events, opts)
    stream = faults.wrap(_body(attempt, events, plan, transport), opts, attempt, transport)
    headers = {"cache-control": "no-cache"}
    if opts.get("gzip") == "1":
        stream, headers["content-encoding"] = faults.wrap_encoded(_gzipped(stream), opts, attempt), "gzip"
    return _ClosingStream(stream, media_type="text/event-stream", headers=headers)


async def _gzipped(stream: Any):
    compressor = zlib.compressobj(wbits=31)  # 31: the gzip container
    try:
        async for piece in stream:
            yield compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)
        yield compressor.flush()
    finally:
        await stream.aclose()


async def list_models(request: Request) -> Response:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "llm-sse-proxy"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _error(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'error')}")


class _MockApp(Starlette):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # ASGI gives no handle on the socket. Under uvicorn `send` is a bound method of the request
        # cycle, which holds the transport; Starlette's middlewares wrap `send`, so grab it here.
        if scope["type"] == "http":
            scope[_TRANSPORT] = getattr(getattr(send, "__self__", None), "transport", None)
        await super().__call__(scope, receive, send)


def create_mock_upstream_app(recorder: Recorder | None = None, *, default_reply: str = DEFAULT_REPLY,
                             options: dict[str, str] | None = None) -> Starlette:
    """`options`: defaults for every request's options; a test may change them while the server runs."""
    from llm_sse_proxy.mock_upstream import anthropic, gemini, ollama, openai_responses  # they build on this module

    app = _MockApp(
        routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                Route("/v1/models", list_models, methods=["GET"]),
                *anthropic.ROUTES, *gemini.ROUTES, *ollama.ROUTES, *openai_responses.ROUTES],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.recorder = recorder if recorder is not None else Recorder()
    app.state.default_reply = default_reply
    app.state.options = options if options is not None else {}
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-sse-proxy mock-upstream", epilog=options_epilog(),
                                     description="A fake LLM server (OpenAI, Anthropic, Gemini, Ollama dialects) "
                                     "with fault injection, for rehearsals and tests.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--reply", default=DEFAULT_REPLY, help="the reply text when not echoing")
    args = parser.parse_args(argv)
    app = create_mock_upstream_app(default_reply=args.reply)
    # A stalled stream would otherwise hold Ctrl-C forever; access logs off to stay fast in benchmarks.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=1)
    sock = config.bind_socket()  # bind first so the printed port is the real one, even with --port 0
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mock upstream on http://{host}:{sock.getsockname()[1]}/v1", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
