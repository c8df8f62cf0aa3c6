"""A private network namespace for the bench: Portkey's gateway listens on every interface and has no host
option (issue 27), so a run that includes it enters a namespace of its own first, whose only interface is
its own loopback. Everything the run starts (the mocks, the servers, Redis, the load client) is in it too:
they reach each other on 127.0.0.1, and nothing of them is reachable from outside.

`unshare -n` (util-linux, as root) re-runs the runner in the new namespace; there the runner brings `lo` up
itself (an ioctl, so iproute2 is not needed). Installs (LiteLLM's venv, Portkey's `npm ci`) happen before,
outside: the namespace has no network.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

MARK = "LLMSSE_BENCH_NETNS"  # set in the re-run: it is already inside
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def inside() -> bool:
    return os.environ.get(MARK) == "1"


def why_not() -> str | None:
    """None when a private namespace can be made here, else why not."""
    if os.geteuid() != 0:
        return "a private network namespace needs root (unshare -n)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    return None if probe.returncode == 0 else f"unshare -n failed: {probe.stderr.decode(errors='replace')[:200]}"


def rerun_inside(argv: list[str]) -> int:
    """Run `python argv...` in a new network namespace; return its exit status."""
    return subprocess.call(["unshare", "-n", sys.executable, *argv], env={**os.environ, MARK: "1"})


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
