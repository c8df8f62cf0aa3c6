"""Why adapters/anthropic.py does not use the official SDK: client CPU per request, the anthropic SDK's
`post()` against a plain httpx2 request on the same client (the proxy's, httpx2 on aiohttp). Both read
the raw body and decode it with our EventStreamDecoder, as the OpenAI adapter does with its SDK; the
upstream is the mock (its OpenAI dialect: only the bytes matter here), in a subprocess. Interleaved.

The SDK is not a dependency; to rerun: .venv/bin/pip install 'anthropic[aiohttp]' (2.x runs on httpx2),
then .venv/bin/python bench/anthropic_sdk_cost.py (about a minute).
"""
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anthropic  # noqa: E402
import httpx2  # noqa: E402

from llm_sse_proxy.adapters.event_stream import EventStreamDecoder  # noqa: E402
from llm_sse_proxy.adapters.http_client import HttpClients  # noqa: E402

N, ROUNDS = 200, 5

async def via_sdk(client, body):
    r = await client.post("/chat/completions", cast_to=httpx2.Response, body=body, stream=True, stream_cls=None)
    n = await consume(r)
    return n

async def via_plain(http, base, body, headers):
    req = http.build_request("POST", base + "/chat/completions", json=body, headers=headers)
    r = await http.send(req, stream=True)
    if r.status_code >= 400: raise RuntimeError(r.status_code)
    return await consume(r)

async def consume(r):
    dec, n = EventStreamDecoder(), 0
    try:
        async for raw in r.aiter_raw():
            n += len(dec.feed(raw))
    finally:
        await r.aclose()
    return n

async def main():
    p = subprocess.Popen([sys.executable, "-m", "llm_sse_proxy.mock_upstream", "--port", "0"], stdout=subprocess.PIPE, text=True)
    base = re.search(r"(http://\S+)", p.stdout.readline()).group(1)
    try:
        http = HttpClients(5).new()
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=base, http_client=http, max_retries=0)
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "authorization": "Bearer k"}
        sdk = sdk.with_options(default_headers={"authorization": "Bearer k"})
        for chunks in (1, 200):
            body = {"model": f"m+chunk_chars={max(1, 90 // chunks)}", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            res = {"sdk": [], "plain": []}
            for _ in range(ROUNDS):
                for name in ("sdk", "plain"):  # interleaved
                    t = time.process_time()
                    for _ in range(N):
                        n = await (via_sdk(sdk, body) if name == "sdk" else via_plain(http, base, body, headers))
                    res[name].append((time.process_time() - t) / N * 1e6)
            for name, v in res.items():
                v.sort()
                print(f"events/stream={n:4d} {name:5s} median {v[len(v)//2]:8.1f} us CPU per request (min {v[0]:.1f}, max {v[-1]:.1f})")
        await http.aclose()
    finally:
        p.terminate()
        p.wait()

asyncio.run(main())
