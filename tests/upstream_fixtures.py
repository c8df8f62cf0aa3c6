"""The mock OpenAI upstream under uvicorn, and proxy configs that point at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY, Recorder, create_mock_upstream_app
from llm_sse_proxy.proxy.config import Config
from tests.conftest import make_config, serve

API_KEY = "sk-test-canary-4f1b2c3d4e5f"

# Every adapter that speaks HTTP, and where the mock upstream serves its dialect.
DIALECTS = ("openai", "anthropic", "gemini", "ollama", "openai_responses")
_PATHS = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta", "ollama": "", "openai_responses": "/v1"}


@dataclass
class Upstream:
    url: str
    recorder: Recorder

    def model(self, name: str, upstream_model: str, dialect: str = "openai", **options: Any) -> dict[str, Any]:
        return model_at(self.url, dialect, name, upstream_model, **options)


def model_at(url: str, dialect: str, name: str = "gpt", upstream_model: str = "m", **options: Any) -> dict[str, Any]:
    """A model of `dialect` whose upstream is the server at `url` (the dialect's path added)."""
    return {"name": name, "adapter": dialect, "base_url": url + _PATHS[dialect], "api_key": API_KEY,
            "model": upstream_model, **options}


@asynccontextmanager
async def mock_upstream(reply: str = DEFAULT_REPLY, options: dict[str, str] | None = None) -> AsyncIterator[Upstream]:
    """`options`: every request's default mock options; the test may change the dict while it runs."""
    recorder = Recorder()
    async with serve(create_mock_upstream_app(recorder, default_reply=reply, options=options)) as url:
        yield Upstream(url, recorder)


def upstream_config(models: list[dict[str, Any]], **top: Any) -> Config:
    """Fast retries and short timeouts, so failure tests finish in well under a second each."""
    top.setdefault("retry", {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 5})
    top.setdefault("timeouts", {"connect": 2, "first_token": 5, "idle": 5, "total": 30})
    return make_config(models, **top)
