"""The bench mock's native wire bytes (bench/mock_dialects.py) are what each adapter reads: the whole text,
one text delta per content piece, then `stop` with the usage the bytes carry."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx2
import pytest

from llm_sse_proxy.adapters import anthropic, gemini, ollama
from bench import mock_dialects
from llm_sse_proxy.proxy.deltas import Finish, TextDelta

pytestmark = pytest.mark.anyio

ADAPTERS = {
    "anthropic": (anthropic.AnthropicAdapter, anthropic.AnthropicOptions, mock_dialects.anthropic),
    "gemini": (gemini.GeminiAdapter, gemini.GeminiOptions, mock_dialects.gemini),
    "ollama": (ollama.OllamaAdapter, ollama.OllamaOptions, mock_dialects.ollama),
}
CHUNK = re.compile(rb"([0-9a-f]+)\r\n")


def unchunked(writes: list[bytes]) -> list[bytes]:
    """The HTTP chunks' payloads, one per chunk, as the client's reads would hand them on."""
    payloads, wire = [], b"".join(writes)
    while (size := int(CHUNK.match(wire)[1], 16)) > 0:  # type: ignore[index]
        start = wire.index(b"\r\n") + 2
        payloads.append(wire[start : start + size])
        wire = wire[start + size + 2 :]
    assert wire == b"0\r\n\r\n"
    return payloads


async def replay(payloads: list[bytes]) -> AsyncIterator[bytes]:
    for payload in payloads:
        yield payload


@pytest.mark.parametrize("dialect", list(ADAPTERS))
@pytest.mark.parametrize("n", [1, 100])
async def test_each_adapter_reads_the_bench_mocks_answer_whole(dialect: str, n: int) -> None:
    adapter_class, options_class, wire = ADAPTERS[dialect]
    options = options_class(base_url="http://127.0.0.1:9", api_key="bench", model=f"n{n}-i0")
    pieces = [f" tok{i}é" if i % 10 == 9 else f" tok{i}" for i in range(n)]  # as bench/mock_upstream.py's
    async with httpx2.AsyncClient() as http:  # never used: the body is replayed
        adapter = adapter_class(options, http=http)
        deltas = [d async for d in adapter._deltas(replay(unchunked(wire(pieces, f"n{n}-i0"))))]
    texts = [d.text for d in deltas if isinstance(d, TextDelta)]
    assert texts == pieces
    finish = deltas[-1]
    assert isinstance(finish, Finish) and len(deltas) == n + 1
    assert (finish.reason, finish.usage.prompt_tokens, finish.usage.completion_tokens) == ("stop", 5, n)  # type: ignore[union-attr]
