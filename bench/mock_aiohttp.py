"""The bench's second upstream: the same OpenAI streams from an aiohttp handler that awaits each write.

`python bench/mock_aiohttp.py --port 9101`. The bytes are mock_upstream.py's (same shapes, same model
names `n<chunks>-i<ms>`), but sent the way most servers in front of a model send them: a request handler
on the default asyncio loop, `await response.write(event)` per event, each its own `send` system call.
mock_upstream.py instead runs on uvloop, which queues every write of one loop iteration and sends them
together, so a zero-delay stream leaves it in one or a few segments and the proxy reads many events at
once; here the proxy, on another core, reads while the handler is still writing, a few events at a time
(issue 27: why an outside harness and `make bench` disagreed about what resume costs). OpenAI dialect only.
"""

from __future__ import annotations

import argparse
import asyncio
import re

from aiohttp import web

from mock_upstream import SHAPE, Shapes

# The floor passes the model name through: `w-n100-i0` (bench/interleave.py's per-write prefix) is `n100-i0`.
MODEL = re.compile(rb'"model"\s*:\s*"(?:w-)?' + SHAPE + rb'"')


def unframe(entry: bytes) -> list[bytes]:
    """mock_upstream's pre-encoded HTTP chunks back to their payloads (aiohttp frames them itself)."""
    out, at = [], 0
    while at < len(entry):
        line_end = entry.index(b"\r\n", at)
        size = int(entry[at:line_end], 16)
        if size == 0:
            break
        out.append(entry[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2
    return out


class Events:
    """Per shape, each write's payload: the content events, then the finish, the usage and [DONE], each an
    HTTP chunk of its own, as mock_upstream.py frames them."""

    def __init__(self) -> None:
        self.shapes = Shapes()
        self._cache: dict[tuple[int, str], list[bytes]] = {}

    def get(self, n: int, model: str) -> list[bytes]:
        if (n, model) not in self._cache:
            self._cache[n, model] = [event for entry in self.shapes.events(None, n, model) for event in unframe(entry)]
        return self._cache[n, model]


def create_app() -> web.Application:
    events = Events()

    async def chat(request: web.Request) -> web.StreamResponse:
        match = MODEL.search(await request.read())
        n, interval = (int(match["n"]), float(match["i"]) / 1000) if match else (100, 0.0)
        model = match["model"].decode() if match else "n100-i0"
        writes = events.get(n, model)
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, data in enumerate(writes):
            # The same absolute schedule as mock_upstream.py; the end goes right after the last content.
            if interval > 0 and 0 < i < n:
                await asyncio.sleep(max(start + i * interval - loop.time(), 0))
            await response.write(data)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
