"""What a start says about itself: the config, the models (names and adapters, never keys), --mock,
the demo URL, where resumable streams and shared state live (Redis as host:port, never its URL), and
warnings for a proxy others can reach with auth off or with CORS open to every site, or whose Redis does
not answer."""

from __future__ import annotations

import ipaddress

from llm_sse_proxy.proxy.config import Config, ModelConfig
from llm_sse_proxy.proxy.state.redis import endpoint

WILDCARDS = {"0.0.0.0", "::", ""}


def startup_summary(config: Config, *, config_file: str, mock: bool, host: str, port: int,
                    redis_problem: str | None = None) -> list[str]:
    """Lines to print once at start; the last ones are warnings for a proxy others can reach, or whose Redis
    did not answer (`redis_problem`: why, from `proxy.state.redis.probe`)."""
    models = ", ".join(f"{m.name} ({_adapters(m)})" for m in config.models)
    lines = [f"config: {config_file}", f"models: {models}; default: {config.default_model}"]
    if mock:
        lines.append("--mock: every model answers from the offline mock adapter")
    lines.append(f"demo page: http://{_browsable(host)}:{port}/")
    return lines + state_lines(config, redis_problem) + _warnings(config, host)


def state_lines(config: Config, redis_problem: str | None) -> list[str]:
    """Where the shared state lives (issue 26 item 12): the stream store, and Redis by host:port only."""
    resume, url = config.resume, config.resume.redis_url
    at = f"redis at {endpoint(url.get_secret_value())}" if url is not None else ""
    if not resume.enabled:
        lines = ["resumable streams: off (a client that leaves cancels its upstream)"]
    elif resume.store == "memory":
        lines = [f"resumable streams: memory store, this process only (grace {resume.grace:g} s, "
                 f"retention {resume.retention:g} s)"]
    else:
        lines = [f"resumable streams: {at} (grace {resume.grace:g} s, retention {resume.retention:g} s)"]
    if url is not None:
        lines.append(f"shared limits, routing state and budgets: {at}")
        if redis_problem is not None:
            lines.append(f"WARNING: {at} does not answer ({redis_problem}): requests that need it get 503 "
                         "store_unavailable until it does")
    return lines


def _adapters(model: ModelConfig) -> str:
    """`openai`, or for a model with deployments `3 deployments: openai, ollama`."""
    adapters = ", ".join(dict.fromkeys(d.adapter for d in model.upstreams()))
    return f"{len(model.deployments)} deployments: {adapters}" if model.deployments else adapters


def _warnings(config: Config, host: str) -> list[str]:
    reachable = not is_loopback(host)
    warnings = []
    if reachable and not config.auth.key_hashes:
        warnings.append(f"WARNING: listening on {host or '*'} with auth off: anyone who reaches this port streams "
                        "on your upstream keys; set auth.keys (config.yaml's auth comment says how)")
    if "*" in config.server.cors_origins:
        cors = "any web page can read the streams; list your site's origins in server.cors_origins"
        warnings.append(f'WARNING: CORS is "*": {cors}' if reachable else f'CORS: "*" ({cors} before you deploy)')
    return warnings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything


def _browsable(host: str) -> str:
    if host in WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
