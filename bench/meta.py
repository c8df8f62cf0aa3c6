"""What a bench run ran on: the machine, the package versions, the load before it, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone

import paths
import procs


def describe(quick: bool) -> dict:
    """The machine, the versions and the commit, for results.md's first lines."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    versions = {}
    for package in ("starlette", "uvicorn", "httpx2", "openai", "aiohttp", "uvloop", "httptools", "orjson"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing optional package is just not listed
            pass
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu, "cores": os.cpu_count(),
            "mem_gib": round(mem / 2**20, 1), "kernel": platform.release(), "python": platform.python_version(),
            "versions": versions, "litellm": paths.LITELLM_VERSION, "quick": quick, "load_before": procs.load_average(),
            "commit": _git("rev-parse", "--short", "HEAD")}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=paths.ROOT, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
