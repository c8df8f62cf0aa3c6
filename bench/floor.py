"""The floor: the cheapest correct relay in Python, to measure the proxy's overhead against.

Starlette and one aiohttp client (the cheapest HTTP client in Python here: about 41 µs per relayed
chunk against 75 for httpx2's own transport, in one bench run); upstream SSE lines in,
`data: {"text": ...}` and one terminate out. No validation, retries, timeouts, pings or disconnect
handling beyond Starlette's own.
`python bench/floor.py --upstream http://127.0.0.1:9100/v1 --port 9200`
"""

import argparse
import json
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route


def create_app(upstream: str, per_write_upstream: str | None = None) -> Starlette:
    state = {}

    @asynccontextmanager
    async def lifespan(app):
        connector = aiohttp.TCPConnector(limit=0)  # no cap: every open stream holds a connection
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout()) as session:
            state["session"] = session
            yield

    async def chat(request):
        body = {**json.loads(await request.body()), "stream": True}
        base = upstream
        if per_write_upstream and body["model"].startswith("w-"):  # make bench's per-write shape (bench/interleave.py)
            base, body["model"] = per_write_upstream, body["model"][2:]

        async def events():
            async with state["session"].post(base + "/chat/completions", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data: {"):
                        choices = json.loads(line[6:])["choices"]
                        if choices and (text := choices[0]["delta"].get("content")):
                            yield "data: " + json.dumps({"text": text}, separators=(",", ":")) + "\n\n"
            yield 'data: {"action":"terminate","reason":"stop"}\n\n'

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/chat", chat, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--per-write-upstream", help="where models named w-... go (bench/mock_aiohttp.py)")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    uvicorn.run(create_app(args.upstream, args.per_write_upstream), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")
