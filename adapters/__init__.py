"""Upstream adapters, one module each, found by the config's `adapter:` name."""

from proxy.deltas import AdapterSpec

from adapters import mock

REGISTRY: dict[str, AdapterSpec] = {
    "mock": mock.SPEC,
}

__all__ = ["REGISTRY"]
