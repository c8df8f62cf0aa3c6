"""CPU per plain-text chunk in-process: SSE bytes -> the OpenAI adapter's decoding -> the relay -> SSE bytes.

No sockets and no servers, so the figure is the proxy's own per-chunk work, and a change to the text
path shows in it (a whole-server A/B is bench/ab.py). Bounded: ROUNDS x STREAMS streams of CHUNKS chunks.

    python bench/relay_cpu.py                           # this checkout
    PYTHONPATH=/path/to/other/checkout python bench/relay_cpu.py   # another revision, same interpreter
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import timeit
from types import SimpleNamespace

from adapters.openai_compat import OpenAICompatAdapter, parse_chunk
from proxy.config import RetryConfig, TimeoutsConfig
from proxy.deltas import ChatRequest, Message
from proxy.relay import Relay, Upstream
from proxy.sse import encode_event

CHUNKS, STREAMS, ROUNDS = 200, 50, 7
HEAD = '{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
TEXT_CHUNK = HEAD + '"delta":{"content":"Hello"},"finish_reason":null}]}'
BODY = ([("data: " + HEAD + '"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n').encode()]
        + [("data: " + TEXT_CHUNK + "\n\n").encode()] * CHUNKS
        + [("data: " + HEAD + '"delta":{},"finish_reason":"stop"}]}\n\n').encode(), b"data: [DONE]\n\n"])


class Replay:
    """The OpenAI adapter's body decoding (`_deltas`) over bytes already in memory."""

    options = SimpleNamespace(max_event_bytes=1 << 20)

    def stream(self, request: ChatRequest):
        async def body():
            for piece in BODY:
                yield piece
        return OpenAICompatAdapter._deltas(self, body())  # type: ignore[arg-type]


async def one_round() -> float:
    sent = 0

    async def emit(payload, event=None):
        nonlocal sent
        sent += len(encode_event(1, payload, event) if event else encode_event(1, payload))

    chain = [Upstream("m", Replay())]  # type: ignore[arg-type]
    request = ChatRequest(messages=(Message("user", "hi"),))
    started = time.process_time()
    for _ in range(STREAMS):
        await Relay(chain, request, retry=RetryConfig(), timeouts=TimeoutsConfig()).run(emit)
    return (time.process_time() - started) / (STREAMS * CHUNKS) * 1e6


def main() -> int:
    per_chunk = [asyncio.run(one_round()) for _ in range(ROUNDS)]
    parse = min(timeit.repeat(lambda: parse_chunk(TEXT_CHUNK), number=20_000, repeat=5)) / 20_000 * 1e6
    print(json.dumps({"relay_us_per_chunk_median": round(statistics.median(per_chunk), 2),
                      "relay_us_per_chunk_all": [round(x, 2) for x in per_chunk],
                      "parse_chunk_us": round(parse, 3), "python": sys.version.split()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
