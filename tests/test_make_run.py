"""Issue 26, item 15: Ctrl-C in the terminal of `make run` stops the proxy, and make says nothing after it
(it said `make: *** [Makefile:…: run] Error 130`). The terminal is a real pseudo-terminal, whose Ctrl-C
reaches make, its shell and the proxy alike, as at a keyboard."""

from __future__ import annotations

import os
import pty
import select
import socket
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def read_until(fd: int, wanted: bytes, seconds: float) -> bytes:
    """What the terminal shows, until `wanted` appears, the terminal closes, or `seconds` pass."""
    out, deadline = b"", time.monotonic() + seconds
    while wanted not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                piece = os.read(fd, 65536)
            except OSError:  # the terminal closed: every process in it has exited
                break
            if not piece:
                break
            out += piece
    return out


@pytest.mark.timeout(120)
def test_ctrl_c_ends_make_run_without_an_error_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pid, fd = pty.fork()
    if pid == 0:  # the child: make, in the terminal, from the checkout
        os.chdir(ROOT)
        os.execvp("make", ["make", "--no-print-directory", "run", f"ARGS=--port {port}"])
    try:
        started = read_until(fd, b"listening on", 90)
        assert b"listening on" in started, started.decode(errors="replace")
        os.write(fd, b"\x03")  # Ctrl-C
        after = read_until(fd, b"\x00never", 20)
    finally:
        _, status = os.waitpid(pid, 0)
    text = after.decode(errors="replace")
    assert "Finished server process" in text, text
    assert "make: ***" not in text and "Error 130" not in text and "Traceback" not in text, text
    assert os.waitstatus_to_exitcode(status) in (0, -2)  # make stopped by the Ctrl-C, as any foreground job
