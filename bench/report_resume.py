"""results.md's rows for issue 10: what resumable streams cost, and what two processes share.

report.py imports this module inside `markdown`, once report itself is loaded (each imports the other).
"""

from __future__ import annotations

from report import _LEVELS, _ratio, _spread

TARGETS = {"resume-memory/off": 1.10, "resume-redis/off": 2.0}


def section(results: dict) -> str:
    """The resume and replicas rows, or "" when the run had none of them."""
    parts = [table for table in (cpu_table(results), resume_table(results), replicas_table(results)) if table]
    if not parts:
        return ""
    method = ("Redis: one redis-server the bench starts on a free loopback port, on core 1 with the mock and the "
              "client. Method: docs/performance.md, Resumable streams and replicas.")
    return "\n\n".join(["## Resumable streams and replicas (issue 10)", method, *parts])


def cpu_table(results: dict) -> str:
    """CPU with resume on (memory, Redis) over resume off, ratios within each interleaved round."""
    pairs = [pair for pair in TARGETS if results.get("ratios", {}).get(pair)]
    if not pairs:
        return ""
    rows = ["CPU over resume off, same rounds (the paths' absolute µs: the summary table, next to the floor):", "",
            "| figure | " + " | ".join(f"{pair} (target ≤ {TARGETS[pair]:.2f})" for pair in pairs) + " |",
            "|---" * (len(pairs) + 1) + "|"]
    for key, label in _LEVELS:
        cells = []
        for pair in pairs:
            r = _ratio(results, pair, key)
            met = "" if not r or key == "one-chunk" else (" met" if r["median"] <= TARGETS[pair] else " NOT met")
            cells.append(_spread(r) + met)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def resume_table(results: dict) -> str:
    resume = results.get("resume")
    if not resume:
        return ""
    rows = ["| figure | memory store | Redis store |", "|---|---|---|"]
    latency = resume.get("latency", {})
    rows.append("| resume latency, reconnect to first replayed event, p50 / p99 (ms) | "
                + " | ".join(_latency(latency.get(store)) for store in ("memory", "redis")) + " |")
    memory, redis = resume.get("memory_store"), resume.get("redis_memory")
    rows.append(f"| memory per retained {memory['events'] if memory else 500}-event stream | "
                f"{_bytes(memory)} | {_redis_memory(redis)} |")
    return "\n".join(rows)


def _latency(point: dict | None) -> str:
    if not point:
        return "n/a"
    if "error" in point:
        return f"failed: {point['error']}"
    where = ", resumed on another replica" if point.get("cross_replica") else ""
    return f"{point['p50_ms']:.2f} / {point['p99_ms']:.2f} ({point['reconnects']} reconnects{where})"


def _bytes(memory: dict | None) -> str:
    if not memory:
        return "n/a"
    return (f"{memory['bytes_per_stream']:,.0f} B ({memory['bytes_per_event']:.0f} B per event, frames "
            f"{memory['frame_bytes_per_event']:.0f} B; tracemalloc, {memory['streams']:,} streams)")


def _redis_memory(redis: dict | None) -> str:
    if not redis:
        return "n/a"
    return (f"{redis['bytes_per_1000_streams'] / 2**20:.1f} MiB per 1,000 streams (`INFO memory` used_memory, "
            f"{redis['streams']:,} streams)")


def replicas_table(results: dict) -> str:
    found = results.get("replicas")
    if not found:
        return ""
    rows = ["| set-up | streams/s (zero-delay 100-chunk, c=100) | bad | burst: admitted / refused / other "
            "of asked | the shared limit held exactly |", "|---|---|---|---|---|"]
    for key, point in found.items():
        if "error" in point:
            rows.append(f"| {key} | failed: {point['error']} | | | |")
            continue
        t, a = point["throughput"], point["admission"]
        exact = ("yes" if a["exact"] else "no") if point.get("shared", True) else "not shared: a bucket per process"
        rows.append(f"| {key} | {t['streams_per_s']:,.0f} | {t['bad']} | {a['admitted']} / {a['refused']} / "
                    f"{a['other']} of {a['asked']} (burst {a['configured']}) | {exact} |")
    return "\n".join(rows)
