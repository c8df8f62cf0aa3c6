"""A mock request's options and the plan they make: the faults and pacing it asked for, given as headers
``x-mock-<name>: value`` or a model-name suffix ``name+opt=value`` (server.py's docstring lists them).
Every dialect of the mock upstream reads its requests through here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_sse_proxy.mock_upstream import continuation, faults, limits
from llm_sse_proxy.mock_upstream.openai_rich import RICH_OPTIONS

AFTER_FAULTS = ("drop_after", "close_after", "stall_after", "malformed_after", "error_after",
                "big_after", "endless_after", "unended_after", "fieldless_after")
OPTIONS = frozenset(AFTER_FAULTS + ("fail", "cycle", "retry_after", "retry_after_ms", "error_type", "key",
                                    "delay_ms", "first_delay_ms", "chunk_chars", "big_bytes", "echo_key", "gzip") + RICH_OPTIONS
                    + continuation.CONTINUATION_OPTIONS) | faults.OPTIONS | limits.OPTIONS

@dataclass
class Plan:
    key: str
    fail: int = 0
    status: int = 503
    cycle: int = 0  # fail's count restarts every `cycle` attempts; 0: it counts for the mock's lifetime
    fault: str | None = None
    fault_at: int = 0
    delay: float = 0.0
    first_delay: float | None = None
    chunk_chars: int = 5
    big_bytes: int = 8 << 20
    malformed_times: int = 1


def parse_options(model: str, headers: Any) -> tuple[str, dict[str, str]]:
    base, *parts = model.split("+")
    opts = {}
    for part in parts:
        name, _, value = part.partition("=")
        opts[name.strip().replace("-", "_")] = value.strip()
    for name, value in headers.items():  # Starlette lower-cases header names
        if name.startswith("x-mock-"):
            opts[name[7:].replace("-", "_")] = value.strip()
    if unknown := sorted(opts.keys() - OPTIONS):
        raise ValueError(f"unknown mock option(s): {', '.join(unknown)}")
    return base, opts


def make_plan(model: str, opts: dict[str, str]) -> Plan:
    plan = Plan(key=opts.get("key") or model)
    if "fail" in opts:
        n, _, status = opts["fail"].partition(":")
        plan.fail, plan.status = int(n), int(status or 503)
    plan.cycle = int(opts.get("cycle", 0))
    if plan.cycle and plan.cycle <= plan.fail:
        raise ValueError("cycle must be more than fail's N")
    chosen = [name for name in AFTER_FAULTS if name in opts]
    if len(chosen) > 1:
        raise ValueError(f"only one *_after fault per request, got {chosen}")
    if chosen:
        plan.fault, plan.fault_at = chosen[0], int(opts[chosen[0]])
    plan.delay = float(opts.get("delay_ms", 0)) / 1000
    if "first_delay_ms" in opts:
        plan.first_delay = float(opts["first_delay_ms"]) / 1000
    plan.chunk_chars = int(opts.get("chunk_chars", 5))
    plan.big_bytes = int(opts.get("big_bytes", 8 << 20))
    plan.malformed_times = int(opts.get("malformed_times", 1))
    if plan.chunk_chars < 1 or plan.fault_at < 0 or plan.fail < 0:
        raise ValueError("chunk_chars must be >= 1, counts >= 0")
    return plan


def reply_text(body: dict, default: str) -> str:
    users = [m for m in body.get("messages", ()) if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str) and content.startswith("echo:"):
        return content[5:]
    return default
