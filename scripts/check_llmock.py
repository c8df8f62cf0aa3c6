"""The native adapters against an upstream nobody here wrote: LLMock (PyPI `llmock`, by JulienRabault),
which mocks Anthropic's and Gemini's streaming APIs among others (it has no Ollama dialect).

It runs on FastAPI and httpx, which this project does not install, so it goes in a venv of its own:

    python3 -m venv /tmp/llmock-venv && /tmp/llmock-venv/bin/pip install llmock==0.2.2
    .venv/bin/python scripts/check_llmock.py /tmp/llmock-venv/bin/llmock

It starts `llmock serve` on a free loopback port, streams a plain request and a tool-using request
through the Anthropic and Gemini adapters and checks what they yield; then, for each of LLMock's stream
faults (`--stream-fault KIND=1.0`), a server that always breaks its streams that way, and checks the
error the adapters raise. About 20 s.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2  # noqa: E402

from bench.procs import free_port  # noqa: E402
from llm_sse_proxy.proxy.deltas import ChatRequest, Message, Tool  # noqa: E402
from tests.adapter_harness import adapter_for, gather  # noqa: E402

WEATHER = Tool("get_weather", "The weather in a city", {"type": "object", "properties": {"city": {"type": "string"}},
                                                         "required": ["city"]})
PREFIX = {"anthropic": "/anthropic", "gemini": "/gemini/v1beta"}
MODEL = {"anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}


async def check(url: str) -> int:
    failures = 0
    for dialect in ("anthropic", "gemini"):
        model = {"adapter": dialect, "base_url": url + PREFIX[dialect], "api_key": "llmock-any-key-123",
                 "model": MODEL[dialect]}
        async with adapter_for(model) as adapter:
            plain = await gather(adapter, ChatRequest([Message("system", "Be brief."), Message("user", "Say hello")]))
            tools = await gather(adapter, ChatRequest([Message("user", "Weather in Paris?")], tools=(WEATHER,)))
        ok_plain = bool(plain.text) and plain.reason == "stop" and plain.usage is not None
        ok_tools = (tools.reason == "tool_calls" and len(tools.tool_calls) == 1
                    and tools.tool_calls[0]["name"] == "get_weather"
                    and isinstance(json.loads(tools.tool_calls[0]["arguments"]), dict))
        failures += (not ok_plain) + (not ok_tools)
        print(f"{dialect:9} plain: {'ok' if ok_plain else 'FAILED'} text={plain.text[:60]!r} reason={plain.reason} "
              f"usage={plain.usage}")
        print(f"{dialect:9} tools: {'ok' if ok_tools else 'FAILED'} calls={tools.tool_calls} reason={tools.reason}")
    return failures


FAULTS = {"truncate": "UpstreamTruncated", "disconnect": "UpstreamTruncated", "malformed": "UpstreamMalformed"}


async def check_fault(url: str, fault: str, tries: int = 8) -> int:
    """LLMock breaks a stream after a random chunk from 1 to 6: past the end of a short answer, the answer is
    whole. So each try must raise the fault's error or finish cleanly, and at least one must raise."""
    failures = 0
    for dialect in ("anthropic", "gemini"):
        model = {"adapter": dialect, "base_url": url + PREFIX[dialect], "api_key": "llmock-any-key-123",
                 "model": MODEL[dialect]}
        outcomes = []
        async with adapter_for(model) as adapter:
            for _ in range(tries):
                try:
                    got = await asyncio.wait_for(gather(adapter, ChatRequest([Message("user", "Say hello")])), 20)
                    outcomes.append(f"whole:{got.reason}")
                except Exception as exc:  # noqa: BLE001 - the check reports whatever came out
                    outcomes.append(type(exc).__name__)
        ok = FAULTS[fault] in outcomes and all(o in (FAULTS[fault], "whole:stop") for o in outcomes)
        failures += not ok
        print(f"{dialect:9} {fault}: {'ok' if ok else 'FAILED'} {sorted(set(outcomes))}")
    return failures


async def main(llmock: str) -> int:
    failures = await serving(llmock, [], check)
    for fault in FAULTS:
        failures += await serving(llmock, ["--stream-fault", f"{fault}=1.0"], lambda url: check_fault(url, fault))
    return failures


async def serving(llmock: str, flags: list[str], run) -> int:
    port = free_port()
    server = subprocess.Popen([llmock, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                               *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx2.AsyncClient() as client:
            while True:
                try:
                    await client.get(url + "/anthropic/v1/models")
                    break
                except httpx2.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("llmock did not start") from None
                    await asyncio.sleep(0.2)
        return await run(url)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    raise SystemExit(1 if asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "llmock")) else 0)
