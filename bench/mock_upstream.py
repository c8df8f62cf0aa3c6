"""The bench's upstream: OpenAI chat-completions chunks from a raw asyncio protocol, as cheap as it gets.

`python bench/mock_upstream.py --port 9100`. Every POST is answered with a stream whose shape comes from
the model name in the body, `n<chunks>-i<interval ms>` (e.g. `n100-i0`: 100 content chunks, no delay;
`n100-i20`: 50 chunks/s), so one process serves every workload and every path (direct, floor, proxy,
LiteLLM) asks for the same thing. An OpenAI stream is the content chunks, one finish chunk, one usage chunk
and `data: [DONE]`, each in its own HTTP chunk and its own socket write, as a real server sends them.
The request path picks the dialect: Anthropic's, Gemini's and Ollama's answers are in
mock_dialects.py. Paced chunks keep an absolute schedule (start + i * interval), so a late chunk does not delay the rest.

`GET /_streams` answers how many paced streams are being sent right now: make bench's disconnect check
(bench/peers.py) asks it whether a path closed its upstream after its client left.

The request parser is minimal on purpose (loopback, trusted clients): it reads headers and a
Content-Length body, keeps the connection alive unless asked to close, and ignores everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal

from mock_dialects import DIALECTS, SSE, dialect_of

SHAPE = rb"(?P<model>n(?P<n>\d+)-i(?P<i>\d+(?:\.\d+)?))"
MODEL = re.compile(rb'"model"\s*:\s*"' + SHAPE + rb'"')
PATH_MODEL = re.compile(rb"/models/" + SHAPE + rb":")  # Gemini names the model in the path


def response_head(media_type: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
            % media_type)


def chunk_text(i: int) -> str:
    """The i-th content piece; every tenth carries non-ASCII, to check escaping end to end."""
    return f" tok{i}é" if i % 10 == 9 else f" tok{i}"


def expected_text(n: int) -> str:
    return "".join(chunk_text(i) for i in range(n))


def _event(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(model: str, delta: dict, finish: str | None) -> dict:
    return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


class Shapes:
    """Pre-encoded wire bytes per (chunks, model name): the mock does no JSON work per request."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes | None, int, str], list[bytes]] = {}

    def events(self, dialect: bytes | None, n: int, model: str) -> list[bytes]:
        key = (dialect, n, model)
        if key not in self._cache and dialect is not None:
            self._cache[key] = DIALECTS[dialect][1]([chunk_text(i) for i in range(n)], model)
        if key not in self._cache:
            first = [_event(_chunk(model, {"role": "assistant", "content": chunk_text(0)}, None))] if n else []
            body = first + [_event(_chunk(model, {"content": chunk_text(i)}, None)) for i in range(1, n)]
            usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                     "model": model, "choices": [],
                     "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}}
            tail = _event(_chunk(model, {}, "stop")) + _event(usage) + _event_done()
            self._cache[key] = body + [tail]
        return self._cache[key]


def _event_done() -> bytes:
    data = b"data: [DONE]\n\n"
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


class InFlight:
    """Paced streams being sent, across connections."""

    def __init__(self) -> None:
        self.count = 0


class StreamProtocol(asyncio.Protocol):
    def __init__(self, shapes: Shapes, in_flight: InFlight) -> None:
        self.shapes = shapes
        self.in_flight = in_flight
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.close_after = False
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.in_flight.count -= 1  # closed mid-stream
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._try_request()

    def _try_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        self.close_after = b"connection: close" in head
        path = head.split(b" ", 2)[1]
        self._respond(path, body)

    def _respond(self, path: bytes, body: bytes) -> None:
        assert self.transport is not None
        if path == b"/_streams":
            count = b"%d" % self.in_flight.count
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(count), count))
            self._done()
            return
        dialect = dialect_of(path)
        match = PATH_MODEL.search(path) if dialect == b"/v1beta/models/" else MODEL.search(body)
        n, interval = (int(match["n"]), float(match["i"]) / 1000) if match else (100, 0.0)
        model = match["model"].decode() if match else "n100-i0"
        events = self.shapes.events(dialect, n, model)
        self.busy = True
        media_type = DIALECTS[dialect][0] if dialect else SSE
        self.transport.write(response_head(media_type) + (b"connection: close\r\n\r\n" if self.close_after else b"\r\n"))
        if interval <= 0:
            for event in events:
                self.transport.write(event)
            self._done()
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.in_flight.count += 1
        self._paced(events, 0, start, interval)

    def _paced(self, events: list[bytes], i: int, start: float, interval: float) -> None:
        if self.transport is None:
            return
        self.transport.write(events[i])
        if i + 1 == len(events):
            self.timer = None
            self.in_flight.count -= 1
            self._done()
            return
        # The finish, usage and [DONE] go right after the last content chunk, as a model sends them.
        at = start + (i + 1) * interval if i + 1 < len(events) - 1 else start + i * interval
        self.timer = asyncio.get_running_loop().call_at(at, self._paced, events, i + 1, start, interval)

    def _done(self) -> None:
        self.busy = False
        if self.close_after and self.transport is not None:
            self.transport.close()
        elif self.buffer:
            self._try_request()


async def serve(host: str, port: int, ready: str | None) -> None:
    shapes, in_flight = Shapes(), InFlight()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StreamProtocol(shapes, in_flight), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        print(ready, flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--ready", help="a line to print once listening")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.ready))
    else:
        uvloop.run(serve(args.host, args.port, args.ready))


if __name__ == "__main__":
    main()
