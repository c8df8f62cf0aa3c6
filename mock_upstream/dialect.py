"""What the native dialects of the mock upstream share: a request's plan and faults, and the send loop.

Each dialect (anthropic.py, gemini.py, ollama.py) parses its own request and encodes its own wire
bytes into a `Script`; this module plays the script with the faults the request asked for. The
options are the OpenAI dialect's (server.py's docstring), as headers or a model-name suffix; of the
``*_after`` faults, the dialects play ``drop_after``, ``close_after``, ``stall_after``,
``malformed_after`` and ``error_after`` (their own error event), and ``not_sse`` (a 200 that is not their
stream: JSON or HTML).

What a request gets is chosen by what it asks, as a real model would: thinking when it turns thinking
on, a call to its first tool when it sends tools, else only text.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from llm_sse_proxy.mock_upstream import continuation, faults
from llm_sse_proxy.mock_upstream.recorder import Attempt, Recorder
from llm_sse_proxy.mock_upstream.plan import Plan, make_plan, parse_options, reply_text
from llm_sse_proxy.mock_upstream.server import _ClosingStream, _drop, _TRANSPORT

PLAYED_FAULTS = {"drop_after", "close_after", "stall_after", "malformed_after", "error_after"}
REASONING = "The user wants the canned reply. I will stream it in small pieces."
TOOL_ARGUMENTS = {"location": "Paris", "unit": "celsius"}


@dataclass
class Ask:
    """What one request asked for, in dialect-neutral terms."""

    model: str
    text: str  # the reply: the canned one, or what follows "echo:"
    max_tokens: int | None = None
    thinking: bool = False
    tool: str | None = None  # the first tool's name, when tools were sent
    prompt_chars: int = 0

    def pieces(self, plan: Plan) -> tuple[list[str], bool]:
        """The reply in chunks of `plan.chunk_chars`, cut at max_tokens (one chunk a token); and whether it was."""
        pieces = [self.text[i : i + plan.chunk_chars] for i in range(0, len(self.text), plan.chunk_chars)]
        if self.max_tokens is not None and len(pieces) > self.max_tokens:
            return pieces[: self.max_tokens], True
        return pieces, False

    def prompt_tokens(self) -> int:
        return max(1, self.prompt_chars // 4)


@dataclass
class Script:
    """The wire bytes of one answer; `content` holds one entry per text chunk (what K counts)."""

    head: list[bytes]
    content: list[bytes]
    tail: list[bytes]
    error: bytes  # the dialect's mid-stream error
    malformed: bytes
    media_type: str = "text/event-stream"
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Dialect:
    """One upstream API: how to read its request, check its key, answer errors, and script an answer."""

    parse: Callable[[Request, dict, str], Ask]  # request, body, default reply; may raise ValueError: a 400
    key: Callable[[Request], str | None]  # the key it was sent, or None: a 401
    error: Callable[[int, str, dict[str, str]], JSONResponse]  # status, message, mock options
    script: Callable[[Ask, Plan], Script]


def user_text(messages: Any, default_reply: str) -> tuple[str, int]:
    """The reply for OpenAI-shaped `messages` (the OpenAI dialect's rule), and the prompt's characters."""
    chars = sum(len(json.dumps(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return reply_text({"messages": messages}, default_reply), chars


async def serve(request: Request, dialect: Dialect, model_hint: str | None = None) -> Response:
    recorder: Recorder = request.app.state.recorder
    try:
        raw = await request.body()
    except ClientDisconnect:
        return Response(status_code=499)
    body = _json(raw)
    attempt = Attempt(model_hint or str((body or {}).get("model", "")), body or {}, dict(request.headers))
    recorder.attempts.append(attempt)
    key = dialect.key(request)
    if key is None:
        return _reject(attempt, dialect.error(401, "Missing or invalid API key.", {}))
    if body is None:
        return _reject(attempt, dialect.error(400, "The body must be a JSON object.", {}))
    try:
        _model, opts = parse_options(attempt.model, request.headers)
        plan = make_plan(attempt.model, opts)
        if plan.fault is not None and plan.fault not in PLAYED_FAULTS:
            raise ValueError(f"{plan.fault} is not played by this dialect")
        ask = dialect.parse(request, body, request.app.state.default_reply)
    except ValueError as exc:
        return _reject(attempt, dialect.error(400, f"bad request to the mock: {exc}", {}))
    attempt.key = plan.key
    if (n := recorder._try(plan.key, plan.cycle)) <= plan.fail:
        message = f"Mock failure {n} of {plan.fail} for key {plan.key!r}."
        if opts.get("echo_key"):
            message = f"Invalid API key: {key}."
        return _reject(attempt, dialect.error(plan.status, message, opts), f"fail:{plan.status}")
    if not continuation.fault_fires(opts, n, plan.fail):
        plan.fault = None
    try:
        ask.text = continuation.reply(body, ask.text, opts)
    except continuation.PrefillRejected as exc:
        return _reject(attempt, dialect.error(400, str(exc), {}), "prefill")
    except ValueError as exc:
        return _reject(attempt, dialect.error(400, f"bad request to the mock: {exc}", {}))
    if (page := faults.not_an_event_stream(opts, {"model": ask.model, "text": ask.text})) is not None:
        attempt.finished, attempt.closed_at, attempt.fault = True, time.monotonic(), "not_sse"
        return page
    script = dialect.script(ask, plan)
    stream = play(attempt, script, plan, request.scope.get(_TRANSPORT))
    return _ClosingStream(stream, media_type=script.media_type, headers={"cache-control": "no-cache",
                                                                          **script.extra_headers})


async def play(attempt: Attempt, script: Script, plan: Plan, transport: Any) -> AsyncIterator[bytes]:
    """Send the script, with the fault the plan asks for after K content chunks."""
    try:
        for piece in script.head:
            yield piece
        n = len(script.content)
        at = min(plan.fault_at, n) if plan.fault else -1
        for i in range(n + 1):
            if i == at:
                attempt.fault = plan.fault
                if plan.fault == "malformed_after":
                    yield script.malformed * plan.malformed_times  # and the stream goes on
                else:
                    if plan.fault == "error_after":
                        yield script.error
                    await _end(plan.fault, transport)
                    return
            if i == n:
                break
            delay = plan.first_delay if i == 0 and plan.first_delay is not None else plan.delay
            if delay:
                await anyio.sleep(delay)
            yield script.content[i]
            attempt.chunks_sent += 1
        for piece in script.tail:
            yield piece
        attempt.finished = True
    finally:
        attempt.closed_at = time.monotonic()


async def _end(fault: str | None, transport: Any) -> None:
    """How a fault ends the stream; close_after and error_after: a clean end of the body, no end marker."""
    if fault == "stall_after":
        await anyio.sleep_forever()  # cancelled when the client goes away
    elif fault == "drop_after":
        await _drop(transport)  # never returns


def _reject(attempt: Attempt, response: JSONResponse, fault: str | None = None) -> JSONResponse:
    attempt.status, attempt.fault, attempt.closed_at = response.status_code, fault, time.monotonic()
    return response


def _json(raw: bytes) -> dict | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def retry_headers(opts: dict[str, str]) -> dict[str, str]:
    """`retry_after` / `retry_after_ms` as the headers Anthropic and OpenAI send."""
    names = (("retry-after", "retry_after"), ("retry-after-ms", "retry_after_ms"))
    return {header: opts[option] for header, option in names if option in opts}


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE event of compact JSON."""
    line = "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n\n"
    return (f"event: {event}\n" + line if event else line).encode()

