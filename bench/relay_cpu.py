"""CPU per plain-text chunk in-process: SSE bytes -> the OpenAI adapter's decoding -> the relay -> SSE bytes.

No sockets and no servers, so the figures are the proxy's own per-chunk work, and a change to the text
path shows in them (a whole-server A/B is bench/ab.py). Bounded: ROUNDS rounds of a few thousand chunks.

    python bench/relay_cpu.py                      # this checkout
    python bench/relay_cpu.py --against /tmp/main  # and another checkout (e.g. `git archive main | tar -x`),
                                                   # its modules loaded beside these, rounds alternating

Figures, each the median over rounds in µs per chunk: `parse_chunk` (one text chunk), `decode` (the
adapter's body decoding: bytes to deltas), `relay` (deltas already made, through the relay, no encoding)
and `path` (decoding, relay and SSE encoding together).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from llm_sse_proxy.adapters import openai_compat
from llm_sse_proxy.proxy.relay import relay
from llm_sse_proxy.proxy.config import RetryConfig, TimeoutsConfig
from llm_sse_proxy.proxy.deltas import ChatRequest, Finish, Message, TextDelta
from llm_sse_proxy.proxy.relay.sse import encode_event

CHUNKS, STREAMS, ROUNDS = 200, 20, 9
HEAD = '{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
TEXT_CHUNK = HEAD + '"delta":{"content":"Hello"},"finish_reason":null}]}'
BODY = ([("data: " + HEAD + '"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n').encode()]
        + [("data: " + TEXT_CHUNK + "\n\n").encode()] * CHUNKS
        + [("data: " + HEAD + '"delta":{},"finish_reason":"stop"}]}\n\n').encode(), b"data: [DONE]\n\n"])
DELTAS = [TextDelta("Hello")] * CHUNKS + [Finish("stop")]
REQUEST = ChatRequest(messages=(Message("user", "hi"),))


class Replay:
    """An upstream whose stream is `adapter_module`'s body decoding (`_deltas`) over BODY, or DELTAS as they are."""

    options = SimpleNamespace(max_event_bytes=1 << 20)

    def __init__(self, adapter_module: ModuleType | None) -> None:
        self.adapter_module = adapter_module

    def stream(self, request: ChatRequest) -> Any:
        async def items(source: list[Any]) -> Any:
            for item in source:
                yield item
        if self.adapter_module is None:
            return items(DELTAS)
        return self.adapter_module.OpenAICompatAdapter._deltas(self, items(BODY))


async def encode(payload: dict[str, Any], event: str | None = None) -> None:
    encode_event(1, payload, event) if event else encode_event(1, payload)


async def discard(payload: dict[str, Any], event: str | None = None) -> None:
    pass


async def per_chunk(relay: ModuleType, adapter: ModuleType | None, emit: Any) -> float:
    chain = [relay.Upstream("m", Replay(adapter))]
    started = time.process_time()
    for _ in range(STREAMS):
        await relay.Relay(chain, REQUEST, retry=RetryConfig(), timeouts=TimeoutsConfig()).run(emit)
    return (time.process_time() - started) / (STREAMS * CHUNKS) * 1e6


async def decode(adapter: ModuleType) -> float:
    started = time.process_time()
    for _ in range(STREAMS):
        async for _delta in Replay(adapter).stream(REQUEST):
            pass
    return (time.process_time() - started) / (STREAMS * CHUNKS) * 1e6


def parse(adapter: ModuleType) -> float:
    return min(timeit.repeat(lambda: adapter.parse_chunk(TEXT_CHUNK), number=5000, repeat=3)) / 5000 * 1e6


async def one_round(relay: ModuleType, adapter: ModuleType) -> dict[str, float]:
    return {"parse_chunk": parse(adapter), "decode": await decode(adapter),
            "relay": await per_chunk(relay, None, discard), "path": await per_chunk(relay, adapter, encode)}


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run(variants: dict[str, tuple[ModuleType, ModuleType]]) -> dict[str, dict[str, float]]:
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(ROUNDS):
        for name in order:
            rounds[name].append(await one_round(*variants[name]))
        order.reverse()  # neither variant always goes first
    return {name: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]} for name, rs in rounds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", type=Path, help="another checkout, compared in the same process")
    args = parser.parse_args()
    variants = {"this": (relay, openai_compat)}
    if args.against:
        variants["against"] = (load("against_relay", args.against / "proxy" / "relay.py"),
                               load("against_openai_compat", args.against / "adapters" / "openai_compat.py"))
    print(json.dumps({"us_per_chunk_median": asyncio.run(run(variants)), "python": sys.version.split()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
