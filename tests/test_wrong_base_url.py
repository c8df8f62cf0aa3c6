"""A wrong base_url (the classic missing /v1): the log names the method and URL called, never the key or
the query, and the client's error points at base_url. For every HTTP adapter."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import proxy
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import API_KEY, DIALECTS, mock_upstream, model_at, upstream_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_404_logs_the_call_and_hints_at_base_url(dialect: str, caplog: pytest.LogCaptureFixture) -> None:
    async with mock_upstream() as up:
        model = model_at(up.url, dialect) | {"base_url": f"{up.url}/nowhere"}
        if dialect == "openai":
            model["default_query"] = {"key": API_KEY}  # a query secret, as Azure's and Gemini's
        with caplog.at_level(logging.WARNING, logger="llm_sse_proxy.upstream"):
            async with proxy(upstream_config([model])) as client:
                text, terminate = await ask(client)
    assert text == "" and terminate["error"]["type"] == "upstream_rejected"
    assert terminate["error"]["message"].startswith("the upstream answered 404: ")
    assert terminate["error"]["message"].endswith("; check the model's base_url and model name")
    [logged] = [r.getMessage() for r in caplog.records if r.name == "llm_sse_proxy.upstream"]
    assert logged.startswith(f"the upstream answered 404 to POST {up.url}/nowhere/"), logged
    assert logged.endswith(": check the model's base_url")
    assert API_KEY not in logged + str(terminate) and "?" not in logged
