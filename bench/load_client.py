"""The bench's load client: raw asyncio sockets (uvloop), one or more processes, every stream checked.

Each stream is one HTTP/1.1 request with `Connection: close`; the client reads the chunked response,
stamps each completed SSE event (`\\n\\n`) with the time of the read that brought it, and at the end
checks that the stream is whole: status 200, exactly N text events and one end marker last
(`{"action":"terminate"...}` for the proxy schema, `data: [DONE]` for OpenAI's, `message_stop` for Anthropic's). Every `--full-every`-th
stream is also decoded in full and its text compared with what the mock sent, so byte-exactness is
checked under load too, without paying JSON parsing on every event.

Modes: `run` (C streams in flight, back to back, until S streams or D seconds) prints one JSON result;
`hold` opens C streams, prints `READY <open> <failed>` once each has its first text event, waits for a
line on stdin, then closes them all and prints its result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from array import array
from dataclasses import dataclass, field

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mock_upstream import expected_text  # noqa: E402  (bench/mock_upstream.py, beside this file)

clock = time.perf_counter


@dataclass
class Tally:
    ok: int = 0
    bad: int = 0
    errors: list[str] = field(default_factory=list)
    ttft: array = field(default_factory=lambda: array("d"))
    gaps: array = field(default_factory=lambda: array("d"))
    events: int = 0
    reads: int = 0  # data_received calls of whole streams: events per read shows how the server batched its writes

    def fail(self, why: str) -> None:
        self.bad += 1
        if len(self.errors) < 5:
            self.errors.append(why)


class Stream(asyncio.Protocol):
    def __init__(self, job: "Job", full_check: bool, first_event: asyncio.Future | None = None) -> None:
        self.job = job
        self.full_check = full_check
        self.first_event = first_event
        self.parts: list[bytes] = []
        self.started = clock()
        self.last_event = 0.0
        self.events = 0
        self.prev_newline = False
        self.tail = b""
        self.finished = False
        self.reads = 0
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.job.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = clock()
        self.reads += 1
        self.parts.append(data)
        ends = data.count(b"\n\n") + (1 if self.prev_newline and data[:1] == b"\n" else 0)
        self.prev_newline = data[-1:] == b"\n"
        if ends:
            self._stamp(now, ends)
        self.tail = (self.tail + data)[-7:]
        if self.tail == b"\r\n0\r\n\r\n" and self.transport is not None:
            self.finished = True
            self.transport.close()

    def _stamp(self, now: float, ends: int) -> None:
        tally, first = self.job.tally, self.events
        for index in range(first, min(first + ends, self.job.chunks)):
            if index == 0:
                tally.ttft.append(now - self.started)
                if self.first_event is not None and not self.first_event.done():
                    self.first_event.set_result(None)
            else:  # events that came in the same read as the one before them have no gap
                tally.gaps.append(now - self.last_event if index == first else 0.0)
        self.events += ends
        self.last_event = now

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def check(self) -> str | None:
        """None when the stream is whole, else why not."""
        raw = b"".join(self.parts)
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return f"status: {head[:40]!r}"
        if not self.finished:
            return f"cut after {self.events} events"
        job = self.job
        if job.ui:  # the UI message stream door: text-delta chunks, then [DONE]
            texts = body.count(b'"type":"text-delta"')
            if texts != job.chunks or body.count(b"data: [DONE]") != 1:
                return f"{texts} text-delta chunks, [DONE] x{body.count(b'data: [DONE]')}"
        elif job.anthropic:  # the Messages door: text deltas, then one message_stop last
            texts, ends = body.count(b'"type":"text_delta"'), body.count(b"event: message_stop")
            if texts != job.chunks or ends != 1 or body.rfind(b"message_stop") < body.rfind(b"text_delta"):
                return f"{texts} text deltas, {ends} message_stop"
        elif job.schema:
            texts, ends, last_end = body.count(b'data: {"text":'), body.count(b'"action":"terminate"'), body.rfind(b"terminate")
            if texts != job.chunks or ends != 1 or last_end < body.rfind(b'{"text":'):
                return f"{texts} text events, {ends} terminates"
        else:
            texts = body.count(b'"content":"') - body.count(b'"content":""')
            if texts != job.chunks or body.count(b"data: [DONE]") != 1:
                return f"{texts} content chunks, [DONE] x{body.count(b'data: [DONE]')}"
        if self.full_check:
            text = decode_text(dechunk(body), job.schema, job.ui, job.anthropic)
            if text != expected_text(job.chunks):
                return f"text differs: {text[:60]!r}"
        return None


def dechunk(body: bytes) -> bytes:
    out, at = [], 0
    while True:
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2


def decode_text(stream: bytes, schema: bool, ui: bool = False, anthropic: bool = False) -> str:
    """The concatenated text of every event, the way a browser (or an SDK) would read it."""
    text = []
    for event in stream.split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            continue
        obj = json.loads(data)
        if ui:
            text.append(obj["delta"] if obj.get("type") == "text-delta" else "")
        elif anthropic:
            text.append(obj.get("delta", {}).get("text", "") if obj.get("type") == "content_block_delta" else "")
        elif schema:
            text.append(obj.get("text", ""))
        elif obj.get("choices"):
            text.append(obj["choices"][0].get("delta", {}).get("content") or "")
    return "".join(text)


@dataclass
class Job:
    host: str
    port: int
    request: bytes
    schema: bool
    chunks: int
    full_every: int
    ui: bool = False  # the AI SDK's UI message stream (the proxy's /api/chat door)
    anthropic: bool = False  # Anthropic's message stream (the proxy's /v1/messages door)
    tally: Tally = field(default_factory=Tally)
    count: int = 0

    def next_full(self) -> bool:
        self.count += 1
        return self.full_every > 0 and self.count % self.full_every == 1


def build_request(url: str, body: str, headers: list[str]) -> tuple[str, int, bytes]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    payload = body.encode()
    lines = [f"POST /{path} HTTP/1.1", f"Host: {hostport}", "Content-Type: application/json",
             f"Content-Length: {len(payload)}", "Connection: close", *headers]
    return host, int(port), ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def one_stream(job: Job, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
    stream = Stream(job, job.next_full())
    try:
        await asyncio.wait_for(loop.create_connection(lambda: stream, job.host, job.port), timeout)
        await asyncio.wait_for(asyncio.shield(stream.done), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        if stream.transport is not None:
            stream.transport.abort()
        job.tally.fail(f"{type(exc).__name__}: {exc}"[:120])
        return
    problem = stream.check()
    if problem:
        job.tally.fail(problem)
    else:
        job.tally.ok += 1
        job.tally.events += stream.events
        job.tally.reads += stream.reads


async def run_mode(job: Job, concurrency: int, streams: int, duration: float, stagger: float) -> Tally:
    loop = asyncio.get_running_loop()
    deadline = clock() + duration
    budget = [streams]

    async def slot(index: int) -> None:
        await asyncio.sleep(stagger * index / max(concurrency, 1))
        while budget[0] > 0 and clock() < deadline:
            budget[0] -= 1
            await one_stream(job, loop, timeout=max(deadline - clock(), 0) + 30)

    await asyncio.gather(*(slot(i) for i in range(concurrency)))
    return job.tally


async def hold_mode(job: Job, concurrency: int, open_timeout: float, stagger: float) -> Tally:
    """Open up to `concurrency` streams within `open_timeout` seconds; report how many have their first
    event, then close them all when a line arrives on stdin."""
    loop = asyncio.get_running_loop()
    deadline = clock() + open_timeout
    streams: list[Stream] = []
    firsts: list[asyncio.Future] = []
    gate = asyncio.Semaphore(200)  # connects in flight: a full accept backlog only slows the ramp

    async def open_one(index: int) -> None:
        await asyncio.sleep(stagger * index / concurrency)
        async with gate:
            if clock() >= deadline:
                return
            first = loop.create_future()
            stream = Stream(job, False, first)
            try:
                await asyncio.wait_for(loop.create_connection(lambda: stream, job.host, job.port), deadline - clock())
            except (OSError, asyncio.TimeoutError):
                return
            streams.append(stream)
            firsts.append(first)

    await asyncio.gather(*(open_one(i) for i in range(concurrency)))
    if firsts:
        await asyncio.wait(firsts, timeout=max(deadline - clock(), 0.5))
    opened = sum(1 for first in firsts if first.done())
    print(f"READY {opened} {concurrency - opened}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for stream in streams:
        if stream.transport is not None:
            stream.transport.abort()
    job.tally.ok, job.tally.bad = opened, concurrency - opened
    return job.tally


def worker(args: argparse.Namespace, concurrency: int, streams: int) -> dict:
    import uvloop

    host, port, request = build_request(args.url, args.body, args.header)
    job = Job(host, port, request, args.format == "schema", args.chunks, args.full_every, ui=args.format == "ui",
              anthropic=args.format == "anthropic")
    cpu = time.process_time()
    started = clock()
    if args.mode == "hold":
        tally = uvloop.run(hold_mode(job, concurrency, args.duration, args.stagger))
    else:
        tally = uvloop.run(run_mode(job, concurrency, streams, args.duration, args.stagger))
    return {"ok": tally.ok, "bad": tally.bad, "errors": tally.errors, "events": tally.events, "reads": tally.reads,
            "ttft": tally.ttft.tolist(), "gaps": tally.gaps.tolist(), "wall": clock() - started,
            "cpu": time.process_time() - cpu}


def merge(parts: list[dict]) -> dict:
    out = {"ok": 0, "bad": 0, "errors": [], "events": 0, "reads": 0, "ttft": [], "gaps": [], "wall": 0.0, "cpu": 0.0}
    for part in parts:
        for key in ("ok", "bad", "events", "reads", "cpu"):
            out[key] += part[key]
        out["errors"] += part["errors"][:3]
        out["ttft"] += part["ttft"]
        out["gaps"] += part["gaps"]
        out["wall"] = max(out["wall"], part["wall"])
    return out


def _worker_entry(args: argparse.Namespace, concurrency: int, streams: int, queue: multiprocessing.Queue) -> None:
    queue.put(worker(args, concurrency, streams))


def main() -> None:
    parser = argparse.ArgumentParser(description="bench load client")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--format", choices=["schema", "openai", "ui", "anthropic"], required=True)
    parser.add_argument("--chunks", type=int, required=True, help="text events each stream must carry")
    parser.add_argument("--mode", choices=["run", "hold"], default="run")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=10.0, help="run: stop starting streams after; hold: open timeout")
    parser.add_argument("--stagger", type=float, default=0.0, help="seconds over which to start the slots")
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--full-every", type=int, default=10)
    parser.add_argument("--out", help="write the JSON result here instead of stdout")
    args = parser.parse_args()
    if args.procs == 1 or args.mode == "hold":
        result = worker(args, args.concurrency, args.streams)
    else:
        queue: multiprocessing.Queue = multiprocessing.Queue()
        share = [(args.concurrency + i) // args.procs for i in range(args.procs)]
        procs = [multiprocessing.Process(target=_worker_entry, args=(args, c, max(args.streams * c // args.concurrency, 1), queue))
                 for c in share if c]
        for proc in procs:
            proc.start()
        result = merge([queue.get() for _ in procs])
        for proc in procs:
            proc.join()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
