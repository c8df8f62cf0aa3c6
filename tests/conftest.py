"""Shared test helpers: real uvicorn servers on free loopback ports, and config builders."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.config import Config, parse_config
from tests.sse_parse import Parsed, parse_stream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on a free 127.0.0.1 port; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1, **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


# Today's stream, tied to its connection: what the disconnect and byte-exact tests check. With resume
# on (the default), generation outlives a disconnect by `resume.grace` (tests/test_resume_http.py).
RESUME_OFF = {"resume": {"enabled": False}}

# For tests that send hundreds of streams from one address: the per-client limits are not under test there.
LOAD_TEST_LIMITS = {"requests_per_minute": 100_000, "burst": 10_000, "streams_per_client": 10_000}


def make_config(models: list[dict[str, Any]] | None = None, *, environ: dict[str, str] | None = None,
                **top: Any) -> Config:
    """A validated config from plain dicts; the first model is the default unless given."""
    models = models or [{"name": "mock", "adapter": "mock", "chunk_delay_ms": 0}]
    raw = {"default_model": models[0]["name"], "models": models, **top}
    return parse_config(raw, where="test-config", environ=environ or {})


@asynccontextmanager
async def proxy(config: Config, **kwargs: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """The proxy under uvicorn, and a client whose base URL points at it."""
    async with serve(create_app(config, **kwargs)) as url:
        async with httpx2.AsyncClient(base_url=url, timeout=10, limits=httpx2.Limits(max_connections=None)) as client:
            yield client


async def read_stream(client: httpx2.AsyncClient, method: str, url: str, **kwargs: Any) -> tuple[httpx2.Response, Parsed]:
    async with client.stream(method, url, **kwargs) as response:
        raw = await response.aread()
    return response, parse_stream(raw)


def chat_body(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **extra}


def payloads(parsed: Parsed) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in parsed.events]


def assert_one_terminate_last(items: list[dict[str, Any]]) -> dict[str, Any]:
    terminates = [i for i, p in enumerate(items) if p.get("action") == "terminate"]
    assert terminates == [len(items) - 1], items
    return items[-1]


NODE_DIR = Path(__file__).parent / "node"


def node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed: apt-get install nodejs npm (.ci/run does it)"
    return node, npm


@pytest.fixture(scope="session")
def npm_packages() -> str:
    """Install tests/node's locked npm packages once per run (`npm ci`); return the node binary."""
    node, npm = node_and_npm()
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node
