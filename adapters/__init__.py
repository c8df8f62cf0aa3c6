"""Upstream adapters, one module each, found by the config's `adapter:` name."""

from llm_sse_proxy.proxy.deltas import AdapterSpec

from llm_sse_proxy.adapters import anthropic, gemini, mock, ollama, openai_compat, openai_responses

REGISTRY: dict[str, AdapterSpec] = {
    "mock": mock.SPEC,
    "openai": openai_compat.SPEC,
    "openai_responses": openai_responses.SPEC,
    "anthropic": anthropic.SPEC,
    "gemini": gemini.SPEC,
    "ollama": ollama.SPEC,
}

__all__ = ["REGISTRY"]
