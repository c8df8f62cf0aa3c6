"""The rehearsal upstream: a real HTTP server that speaks the providers' streaming APIs, with faults
chosen per request. Tests serve it over loopback; `llm-sse-proxy mock-upstream` serves it to users.

It lives apart from `adapters/` (which only talk to upstreams) and from `proxy/`.
"""

from llm_sse_proxy.mock_upstream.recorder import Attempt, Recorder
from llm_sse_proxy.mock_upstream.server import DEFAULT_REPLY, create_mock_upstream_app, main

__all__ = ["Attempt", "DEFAULT_REPLY", "Recorder", "create_mock_upstream_app", "main"]
