"""Upstream adapters, one module each, found by the config's `adapter:` name."""

from proxy.deltas import AdapterSpec

from adapters import mock, openai_compat

REGISTRY: dict[str, AdapterSpec] = {
    "mock": mock.SPEC,
    "openai": openai_compat.SPEC,
}

__all__ = ["REGISTRY"]
