"""Turn bench/results/results.json into results.md (tables), PNG charts and the README's performance tables.
`python bench/report.py` redoes them."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ORDER = ["direct", "floor", "llm-sse-proxy", "llm-sse-proxy-v1", "llm-sse-proxy-messages", "llm-sse-proxy-anthropic", "llm-sse-proxy-gemini", "llm-sse-proxy-ollama",
         "llm-sse-proxy-resume-off", "llm-sse-proxy-redis", "llm-sse-proxy-granian", "litellm", "tensorzero", "portkey"]
PEERS = ("tensorzero", "portkey")
COLORS = {"direct": "#888888", "floor": "#4c72b0", "llm-sse-proxy": "#2ca02c", "llm-sse-proxy-granian": "#9467bd",
          "litellm": "#d62728", "llm-sse-proxy-anthropic": "#8c564b", "llm-sse-proxy-gemini": "#17becf",
          "llm-sse-proxy-ollama": "#bcbd22", "llm-sse-proxy-v1": "#ff7f0e", "llm-sse-proxy-messages": "#393b79",
          "llm-sse-proxy-resume-off": "#7f7f7f", "llm-sse-proxy-redis": "#e377c2", "tensorzero": "#000000",
          "portkey": "#aec7e8"}


README = Path(__file__).resolve().parent.parent / "README.md"
# The README's tables sit between these lines; `make bench` rewrites what is between them.
README_BEGIN, README_END = "<!-- bench: begin (bench/report.py writes this) -->", "<!-- bench: end -->"


def write(results: dict, out: Path) -> None:
    (out / "results.md").write_text(markdown(results))
    if out.resolve() == (Path(__file__).resolve().parent / "results") and README.is_file():
        README.write_text(readme_with_tables(README.read_text(encoding="utf-8"), results), encoding="utf-8")
    try:
        charts(results, out)
    except ImportError:
        print("matplotlib is missing: no charts (pip install -e '.[bench]')", file=sys.stderr)


def _paths(results: dict) -> list[str]:
    return [name for name in ORDER if name in results["paths"]]


def _cpu(results: dict, name: str, concurrency: int) -> dict:
    return next((p for p in results["paths"][name]["cpu"] if p["concurrency"] == concurrency), {})


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def added_ttft(results: dict, name: str) -> dict[str, float | None]:
    """Path TTFT minus direct TTFT, per percentile: at c=1 (zero delay) and c=100 (paced)."""
    if "direct" not in results["paths"] or name == "direct":
        return {}
    direct, path = results["paths"]["direct"], results["paths"][name]
    found: dict[str, float | None] = {}
    for pct in ("p50", "p99"):
        key = f"ttft_{pct}_ms"
        one, base_one = _cpu(results, name, 1).get(key), _cpu(results, "direct", 1).get(key)
        found[f"c1_{pct}"] = one - base_one if one is not None and base_one is not None else None
        paced, base = (path.get("ttft_paced") or {}).get(key), (direct.get("ttft_paced") or {}).get(key)
        found[f"c100_{pct}"] = paced - base if paced is not None and base is not None else None
    return found


def _memory(path: dict, streams: int) -> dict:
    return next((m for m in path.get("memory", []) if m["streams"] == streams), {})


_LEVELS = (("c1", "CPU/chunk c=1"), ("c10", "CPU/chunk c=10"), ("c100", "CPU/chunk c=100"),
           ("one-chunk", "CPU/1-chunk stream c=100"))


def _ratio(results: dict, pair: str, level: str) -> dict:
    return results.get("ratios", {}).get(pair, {}).get(level, {})


def _spread(r: dict, digits: int = 2) -> str:
    if not r:
        return "n/a"
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}–{r['max']:.{digits}f}, {len(r['runs'])} rounds)"


def ratio_table(results: dict) -> str:
    """The headline: ratios taken within each interleaved round; median and (min–max) over the rounds."""
    rows = ["| figure | llm-sse-proxy / floor (≤ 1: at or below the floor) | LiteLLM / llm-sse-proxy (x less CPU) "
            "| the proxy under granian / under uvicorn |", "|---|---|---|---|"]
    for key, label in _LEVELS:
        rows.append(f"| {label} | {_spread(_ratio(results, 'proxy/floor', key))} "
                    f"| {_spread(_ratio(results, 'litellm/proxy', key), 1)} "
                    f"| {_spread(_ratio(results, 'granian/uvicorn', key))} |")
    return "\n".join(rows)


def tracing_table(results: dict) -> str:
    """The proxy's CPU with tracing on over off, per chunk and per 1-chunk stream ("" before a run had it)."""
    if not results.get("ratios", {}).get("tracing-on/off"):
        return ""
    rows = ["| figure | tracing on / off |", "|---|---|"]
    rows += [f"| {label} | {_spread(_ratio(results, 'tracing-on/off', key))} |" for key, label in _LEVELS]
    return "\n".join(rows)


def adapter_table(results: dict) -> str:
    """Each native adapter's CPU over the OpenAI adapter's, the same proxy and the same streams (target: ≤ 1.10);
    and `v1`: the OpenAI-compatible door (/v1/chat/completions) over the SSE door (/chat), same adapter."""
    pairs = [pair for pair in results.get("ratios", {}) if pair.endswith("/openai") and results["ratios"][pair]]
    if not pairs:
        return ""
    rows = ["| figure | " + " | ".join(f"{pair.split('/')[0].removeprefix('llm-sse-proxy-')} / openai"
                                       for pair in pairs) + " |", "|---" * (len(pairs) + 1) + "|"]
    for key, label in _LEVELS:
        rows.append(f"| {label} | " + " | ".join(_spread(_ratio(results, pair, key)) for pair in pairs) + " |")
    return "\n".join(rows)


# Issue 27's shapes: the paced and per-write levels beside the burst ones (bench/interleave.py).
_SHAPE_LEVELS = (*_LEVELS, ("paced-c10", "CPU/chunk, paced (50/s) c=10"), ("paced-c100", "CPU/chunk, paced (50/s) c=100"),
                 ("per-write-c1", "CPU/chunk, per-write upstream c=1"), ("per-write-c10", "CPU/chunk, per-write upstream c=10"),
                 ("per-write-c100", "CPU/chunk, per-write upstream c=100"))


def floor_table(results: dict) -> str:
    """Every path's CPU over the floor's at every level and shape, ratios within a round, and whether it closed
    its upstream when its client left (bench/peers.py); empty before issue 27's runs."""
    names = [n for n in ORDER if _ratio(results, f"{n}/floor", "c10") or _ratio(results, f"{n}/floor", "paced-c100")]
    if not any(name in PEERS for name in names):
        return ""
    levels = [(key, label) for key, label in _SHAPE_LEVELS if any(_ratio(results, f"{n}/floor", key) for n in names)]
    rows = ["| path, over the floor | " + " | ".join(label for _, label in levels) + " | upstream closed when the client left |",
            "|---" * (len(levels) + 2) + "|"]
    for name in names:
        left = results["paths"].get(name, {}).get("client_left") or {}
        closed = ("n/a" if left.get("closed") is None else f"yes, after {left['after_s']:.2f} s" if left["closed"]
                  else f"no, not within {left.get('waited_s', 0):g} s")
        rows.append(f"| {name} | " + " | ".join(_spread(_ratio(results, f"{name}/floor", key)) for key, _ in levels)
                    + f" | {closed} |")
    return "\n".join(rows)


def batching_table(results: dict) -> str:
    """Where the events were batched (issue 27): the server's read and write system calls per chunk and the
    client's events per read, each path's median round per level."""
    rows = ["| path | level | server reads/chunk | server writes/chunk | client events/read | CPU/chunk (µs) |",
            "|---|---|---|---|---|---|"]
    for name in _paths(results):
        path = results["paths"][name]
        points = [*(("burst " + f"c{p['concurrency']}", p) for p in path.get("cpu", [])),
                  *path.get("cpu_shapes", {}).items()]
        rows += [f"| {name} | {key} | {p['server_reads_per_chunk']:.3f} | {p['server_writes_per_chunk']:.3f} "
                 f"| {p['client_events_per_read']:.1f} | {p['server_cpu_per_chunk_us']:.1f} |"
                 for key, p in points if "server_reads_per_chunk" in p]
    return "\n".join(rows) if len(rows) > 2 else ""


def readme_tables(results: dict) -> str:
    """The README's performance section: where the figures come from, the ratios, the peers (when the run had
    them), the targets."""
    meta = results["meta"]
    peers = floor_table(results)
    command = f" (`{meta['command']}`)" if meta.get("command") else ""
    return "\n".join([
        f"`make bench` at {meta.get('commit', '?')}, {meta['date']}{' (quick run)' if meta.get('quick') else ''}, "
        f"{meta['cpu']}, {meta['cores']} cores, load average (1, 5, 15 min) {meta['load_before']} before "
        f"({len(_ratio(results, 'proxy/floor', 'c1').get('runs', []))} interleaved rounds; median (min–max)):", "",
        ratio_table(results), "",
        *([f"Each path and the peers over the floor, by upstream shape{command}:", "", peers, ""] if peers else []),
        targets_table(results)])


def readme_with_tables(text: str, results: dict) -> str:
    """`text` (the README) with the tables between its markers made from `results`."""
    head, begin, rest = text.partition(README_BEGIN)
    _old, end, tail = rest.partition(README_END)
    if not begin or not end:
        raise ValueError(f"the README lacks the lines {README_BEGIN!r} and {README_END!r}")
    return f"{head}{README_BEGIN}\n{readme_tables(results)}\n{README_END}{tail}"


def summary_table(results: dict) -> str:
    rows = ["| path | CPU/chunk c=1 (µs) | c=10 | c=100 | CPU/stream c=100 (ms) | added TTFT c=1 p50/p99 (ms) "
            "| added TTFT c=100 p50/p99 (ms) | capacity, paced streams | RSS 1k streams (MiB) | RSS 10k (MiB) "
            "| bytes/stream | start-up (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in _paths(results):
        path, ttft = results["paths"][name], added_ttft(results, name)
        cpu = [_fmt(_cpu(results, name, c).get("server_cpu_per_chunk_us")) for c in (1, 10, 100)]
        capacity = path.get("capacity") or {}
        cap = f"{capacity.get('streams', 0):,}" + ("" if capacity.get("limit_reached") else " (no limit found)")
        big = _memory(path, 9900) or _memory(path, 10000)
        rss_big = _fmt(big.get("rss_open_mb"), 0) if big and "skipped" not in big else "n/a"
        if big and big.get("open") and big["open"] < big["streams"]:
            rss_big += f" ({big['open']:,} open)"
        per_stream = big.get("bytes_per_stream") or _memory(path, 1000).get("bytes_per_stream")
        rows.append(
            f"| {name} | {' | '.join(cpu)} | {_fmt(_cpu(results, name, 100).get('server_cpu_per_stream_ms'), 2)} "
            f"| {_fmt(ttft.get('c1_p50'), 2)} / {_fmt(ttft.get('c1_p99'), 2)} "
            f"| {_fmt(ttft.get('c100_p50'), 2)} / {_fmt(ttft.get('c100_p99'), 2)} | {cap} "
            f"| {_fmt(_memory(path, 1000).get('rss_open_mb'), 0)} | {rss_big} | {_fmt(per_stream, 0)} "
            f"| {_fmt(path.get('startup_s'), 2)} |")
    return "\n".join(rows)


def targets_table(results: dict) -> str:
    paths = results["paths"]
    if "llm-sse-proxy" not in paths:
        return ""
    proxy = paths["llm-sse-proxy"]
    rows = ["| target | measured | met |", "|---|---|---|"]

    def row(target: str, measured: str, met: bool | None) -> None:
        rows.append(f"| {target} | {measured} | {'yes' if met else 'no' if met is not None else 'n/a'} |")

    for c in (1, 10, 100):
        r = _ratio(results, "proxy/floor", f"c{c}")
        row(f"CPU/chunk at or below the floor's (c={c}), median ratio", _spread(r), r["median"] <= 1 if r else None)
    r = _ratio(results, "proxy/floor", "one-chunk")
    row("CPU per 1-chunk stream ≤ 1.2x the floor's (c=100), median ratio", _spread(r), r["median"] <= 1.2 if r else None)
    for c in (1, 10, 100):
        r = _ratio(results, "litellm/proxy", f"c{c}")
        row(f"≥40x less CPU/chunk than LiteLLM (c={c}), median ratio", _spread(r, 1), r["median"] >= 40 if r else None)
    ttft = added_ttft(results, "llm-sse-proxy")
    row("added TTFT p50 < 1 ms at c=100", f"{_fmt(ttft.get('c100_p50'), 2)} ms",
        ttft["c100_p50"] < 1 if ttft.get("c100_p50") is not None else None)
    row("added TTFT p99 < 5 ms at c=100", f"{_fmt(ttft.get('c100_p99'), 2)} ms",
        ttft["c100_p99"] < 5 if ttft.get("c100_p99") is not None else None)
    streams = (proxy.get("capacity") or {}).get("streams")
    row("capacity ≥ 2,000 paced streams on one core", f"{streams:,}" if streams is not None else "n/a",
        streams >= 2000 if streams is not None else None)
    big = _memory(proxy, 9900) or _memory(proxy, 10000)
    if big.get("open"):
        projected = (big["rss_idle_mb"] * 2**20 + 10_000 * big["bytes_per_stream"]) / 2**20
        row("10,000 open streams < 1 GiB RSS", f"{big['rss_open_mb']:.0f} MiB at {big['open']:,} open "
            f"(projected {projected:.0f} MiB at 10,000)", projected < 1024)
    startup = proxy.get("startup_s")
    row("start-up < 1 s", f"{_fmt(startup, 2)} s", startup < 1 if startup is not None else None)
    return "\n".join(rows)


def detail_tables(results: dict) -> str:
    parts = ["### CPU, zero-delay 100-chunk streams (each path's median round; `runs`: every round's figure)\n",
             "| path | c | streams ok/bad | streams/s | server CPU/chunk (µs) | CPU/stream (ms) | TTFT p50/p99 (ms) "
             "| client CPU/chunk (µs) | client+mock CPU on core 1 (cores) | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in _paths(results):
        for p in results["paths"][name]["cpu"]:
            parts.append(f"| {name} | {p['concurrency']} | {p['ok']}/{p['bad']} | {p['streams_per_s']:.0f} "
                         f"| {p['server_cpu_per_chunk_us']:.1f} | {p['server_cpu_per_stream_ms']:.2f} "
                         f"| {p['ttft_p50_ms']:.2f} / {p['ttft_p99_ms']:.2f} "
                         f"| {p['client_cpu_s'] / max(p['ok'] * 100, 1) * 1e6:.1f} | {p['load_core1']:.2f} | {p['loadavg']} |")
            parts.append(f"| | | rounds: {' / '.join(f'{x:.1f}' for x in p.get('runs', []))} µs | | | | | | | |")
    parts += ["\n### CPU per stream, zero-delay 1-chunk streams at c=100 (per-request cost)\n",
              "| path | streams ok/bad | streams/s | server CPU/stream (ms), median round | every round (ms) |",
              "|---|---|---|---|---|"]
    for name in _paths(results):
        if p := results["paths"][name].get("cpu_one_chunk"):
            parts.append(f"| {name} | {p['ok']}/{p['bad']} | {p['streams_per_s']:.0f} | {p['server_cpu_per_stream_ms']:.3f} "
                         f"| {' / '.join(f'{x:.3f}' for x in p.get('runs', []))} |")
    parts += ["\n### Paced streams (50 chunks/s): TTFT at c=100, and the capacity ladder\n",
              "| path | c | streams ok/bad | TTFT p50/p99 (ms) | gap p50/p99 (ms) | added p99 gap (ms) | server core "
              "| core 1 | pass |", "|---|---|---|---|---|---|---|---|---|"]
    for name in _paths(results):
        path = results["paths"][name]
        if t := path.get("ttft_paced"):
            parts.append(f"| {name} | {t['concurrency']} | {t['ok']}/{t['bad']} | {t['ttft_p50_ms']:.2f} / "
                         f"{t['ttft_p99_ms']:.2f} | | | | | |")
        for p in (path.get("capacity") or {}).get("points", []):
            parts.append(f"| {name} | {p['concurrency']} | {p['ok']}/{p['bad']} | | {p['gap_p50_ms']:.1f} / "
                         f"{p['gap_p99_ms']:.1f} | {p['added_gap_p99_ms']:.1f} | {p['server_core_load']:.2f} "
                         f"| {p['load_core1']:.2f} | {'yes' if p['pass'] else 'no'} |")
    parts += ["\n### Memory: slow streams (1 chunk/s) held open\n",
              "| path | streams asked | s between chunks | open | failed | RSS idle (MiB) | RSS open (MiB) | bytes/stream |",
              "|---|---|---|---|---|---|---|---|"]
    for name in _paths(results):
        for m in results["paths"][name].get("memory", []):
            if "skipped" in m:
                parts.append(f"| {name} | {m['streams']:,} | | skipped: {m['skipped']} | | | | |")
            else:
                parts.append(f"| {name} | {m['streams']:,} | {m.get('chunk_interval_s', 1):g} | {m['open']:,} "
                             f"| {m['failed']:,} | {m['rss_idle_mb']:.0f} "
                             f"| {m['rss_open_mb']:.0f} | {m['bytes_per_stream']:,.0f} |")
    if workers := results.get("workers"):
        parts += ["\n### Workers: llm-sse-proxy not pinned; the mock and the client share the two cores\n",
                  "| workers | zero-delay c=100: streams/s | chunks/s | server CPU/chunk (µs) "
                  "| paced c=100: added p99 gap (ms) | paced c=200: added p99 gap (ms) |", "|---|---|---|---|---|---|"]
        for count, p in sorted(workers.items()):
            if "error" in p:
                parts.append(f"| {count} | {p['error']} | | | | |")
                continue
            paced = {q["concurrency"]: q for q in p.get("paced", [])}
            gaps = [f"{paced[c]['added_gap_p99_ms']:.1f} ({'pass' if paced[c]['pass'] else 'fail'})" if c in paced
                    else "n/a" for c in (100, 200)]
            parts.append(f"| {count} | {p['streams_per_s']:.0f} | {p['streams_per_s'] * 100:,.0f} "
                         f"| {p['server_cpu_per_chunk_us']:.1f} | {gaps[0]} | {gaps[1]} |")
    return "\n".join(parts)


def markdown(results: dict) -> str:
    import report_resume

    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# llm-sse-proxy bench results", "",
        f"- date: {meta['date']}{' (quick run)' if meta.get('quick') else ''}; commit {meta.get('commit', '?')}; "
        f"{meta.get('seconds', '?')} s",
        f"- machine: {meta['cpu']}, {meta['cores']} cores, {meta['mem_gib']} GiB, Linux {meta['kernel']}, "
        f"Python {meta['python']}; load average {meta['load_before']} before, {meta.get('load_after', '?')} after "
        "(the machine is shared)",
        f"- versions: {versions}; LiteLLM {meta['litellm']} (litellm[proxy] + httptools, 1 worker)",
        "- method: the CPU phase is interleaved (bench/interleave.py); the other phases run path by path. Servers pinned to core 0; the mock upstream, the load client and the runner to core 1. CPU is "
        "the server process tree's own utime+stime (/proc). Each stream: 100 content chunks, a finish chunk, a "
        "usage chunk, [DONE] (the native adapters' paths: the same content in their dialect, bench/mock_dialects.py); every stream is checked whole, every 10th decoded and compared with the text sent.",
        "- added TTFT: the path's TTFT minus direct's at the same percentile; c=1 with zero-delay streams, c=100 with "
        "paced streams (50 chunks/s). Capacity: paced streams, largest concurrency with added p99 gap < 10 ms and "
        "no broken stream.",
        "- memory: slow streams held open for up to 60 s, RSS of the server tree; 1,000 streams at 1 chunk/s, and "
        "9,900 (the file-descriptor limit here is 20,000, and the proxy holds two sockets per stream) at 1 chunk "
        "per 10 s, the same chunk rate: 10,000 chunks/s is more than one core relays in Python. Start-up: median "
        "of 3 cold starts (LiteLLM: 1), process start to the first event of a streamed answer.",
    ]
    lines += [f"- note: {note}" for note in results.get("notes", [])]
    lines += ["", "## CPU ratios, interleaved rounds (the headline)", "",
              "Each round runs every path at every level back to back, in an order rotated each round; a ratio is "
              "taken within a round, then the rounds give its median and (min–max).", "", ratio_table(results),
              *(["", "### Adapters: each native adapter's CPU over the OpenAI adapter's (target ≤ 1.10)", "",
                 adapter_table(results)] if adapter_table(results) else []),
              *(["", "### Every path over the floor, by upstream shape (issue 27)", "", floor_table(results)]
                if floor_table(results) else []),
              *(["", "### Where the events were batched (issue 27)", "", batching_table(results)]
                if batching_table(results) else []),
              *(["", report_resume.section(results)] if report_resume.section(results) else []),
              *(["", "### Tracing on (exporting to a loopback OTLP receiver) over off (issue 25)", "",
                 tracing_table(results)] if tracing_table(results) else []),
              "", "## Summary (absolute figures; CPU: each path's median round)", "", summary_table(results), "", "## Targets (llm-sse-proxy)", "",
              targets_table(results), "", "## Details", "", detail_tables(results), "",
              "Charts: cpu_per_chunk.png, ttft.png, capacity.png, memory.png, startup.png.", ""]
    return "\n".join(lines)


def charts(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _paths(results)
    stamp = f"{results['meta']['date']}, {results['meta']['cpu']}, 1 core per server"

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [_cpu(results, name, c).get("server_cpu_per_chunk_us") or 0 for c in (1, 10, 100)]
        ax.bar([x + i * width for x in range(3)], values, width, label=name, color=COLORS[name])
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(3)], ["c=1", "c=10", "c=100"])
    ax.set_yscale("log")
    ax.set_ylabel("server CPU per relayed chunk (µs, log)")
    ax.set_title(f"CPU per chunk (direct = the mock itself)\n{stamp}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cpu_per_chunk.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    proxies = [n for n in names if n != "direct"]
    keys = [("c1_p50", "c=1 p50"), ("c1_p99", "c=1 p99"), ("c100_p50", "c=100 p50"), ("c100_p99", "c=100 p99")]
    width = 0.8 / max(len(proxies), 1)
    for i, name in enumerate(proxies):
        ttft = added_ttft(results, name)
        ax.bar([x + i * width for x in range(len(keys))], [max(ttft.get(k) or 0, 0.01) for k, _ in keys], width,
               label=name, color=COLORS[name])
    ax.set_xticks([x + width * (len(proxies) - 1) / 2 for x in range(len(keys))], [label for _, label in keys])
    ax.set_yscale("log")
    ax.set_ylabel("added time to first token (ms, log)")
    ax.set_title(f"Added TTFT vs direct (c=100: paced streams)\n{stamp}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ttft.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        points = (results["paths"][name].get("capacity") or {}).get("points", [])
        if points:
            ax.plot([p["concurrency"] for p in points], [max(p["added_gap_p99_ms"], 0.1) for p in points], "o-",
                    label=name, color=COLORS[name])
    ax.axhline(10, color="black", linestyle="--", linewidth=1, label="10 ms limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent paced streams (50 chunks/s each)")
    ax.set_ylabel("added p99 gap between chunks (ms, log)")
    ax.set_title(f"Capacity on one core\n{stamp}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "capacity.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        mem = [m for m in results["paths"][name].get("memory", []) if m.get("open")]
        if mem:
            ax.plot([0] + [m["open"] for m in mem], [mem[0]["rss_idle_mb"]] + [m["rss_open_mb"] for m in mem], "o-",
                    label=name, color=COLORS[name])
    ax.set_xlabel("open slow streams (1,000 at 1 chunk/s, 9,900 at 1 chunk per 10 s)")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title(f"Memory\n{stamp}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3))
    started = [(n, results["paths"][n].get("startup_s")) for n in names if results["paths"][n].get("startup_s")]
    ax.barh([n for n, _ in started], [s for _, s in started], color=[COLORS[n] for n, _ in started])
    for i, (_, s) in enumerate(started):
        ax.text(s, i, f" {s:.2f} s", va="center")
    ax.set_xlabel("seconds from process start to the first event of a streamed answer")
    ax.set_title(f"Start-up\n{stamp}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "startup.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    write(json.loads((target / "results.json").read_text()), target)
