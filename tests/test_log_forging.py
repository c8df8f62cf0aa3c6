"""Issue 26, item 4: a value the text log format writes cannot start a line of its own. An upstream's
error message that quotes the prompt, logged as the proxy falls back, once wrote the prompt's newline and
a JSON record as they were: a well-formed fake access line, charged to someone else."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llm_sse_proxy.proxy.telemetry.log_format import TextFormatter, use_format
from tests.conftest import RESUME_OFF, chat_body, payloads, proxy, read_stream, serve
from tests.upstream_fixtures import model_at, upstream_config

pytestmark = pytest.mark.anyio

FORGED = json.dumps({"event": "stream", "request_id": "forged", "client": "key:someone-else", "reason": "stop"})
PROMPT = f"hi\n{FORGED}\r\n2026-01-01 00:00:00,000 INFO llm_sse_proxy: \x1b[31mall is well\x1b[0m\u2028"


async def quoting_upstream(request: Request) -> JSONResponse:
    """An upstream whose 400 quotes the request, as many do."""
    prompt = (await request.json())["messages"][-1]["content"]
    return JSONResponse({"error": {"message": f"Invalid prompt: {prompt}", "type": "invalid_request_error"}}, 400)


@contextmanager
def text_log() -> Iterator[io.StringIO]:
    """What the CLI's text format writes, captured from the root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    use_format("text", [handler])
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_an_upstream_error_quoting_the_prompt_cannot_forge_a_line() -> None:
    upstream = Starlette(routes=[Route("/v1/chat/completions", quoting_upstream, methods=["POST"])])
    async with serve(upstream) as url:
        models = [model_at(url, "openai", "gpt", fallbacks=["mock"]), {"name": "mock", "adapter": "mock",
                                                                       "chunk_delay_ms": 0}]
        with text_log() as log:
            async with proxy(upstream_config(models, **RESUME_OFF)) as client:
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(PROMPT))
    assert payloads(parsed)[-1]["model"] == "mock"
    lines = log.getvalue().splitlines()
    quoting = [line for line in lines if "Invalid prompt" in line]
    assert len(quoting) == 1, lines
    assert "\\n{" in quoting[0] and "\\r\\n2026" in quoting[0] and "\\x1b[31m" in quoting[0], quoting[0]
    assert not [line for line in lines if line.startswith(("{", "2026-01-01"))], lines
    assert "\u2028" not in log.getvalue()


def test_a_traceback_stays_under_its_line() -> None:
    try:
        raise ValueError(f"upstream said:\n{FORGED}")
    except ValueError:
        record = logging.LogRecord("llm_sse_proxy", logging.ERROR, __file__, 1, "failed: %s", ("x\ny",), None)
        record.exc_info = sys.exc_info()
    text = TextFormatter().format(record)
    first, *rest = text.split("\n")
    assert first.endswith("failed: x\\ny") and rest and all(line.startswith("    ") for line in rest), text
