"""`--workers N`: N processes that share one listening socket, each a whole proxy.

The parent binds the socket, starts the workers (multiprocessing "spawn": nothing of the parent's
event loop or clients is inherited), forwards SIGTERM/SIGINT to them and waits. Each worker reads the
config itself and runs the same graceful server as a single process, so open streams still end with a
`shutdown` terminate. uvicorn's own `--workers` would run plain uvicorn servers in the children and lose
that. A worker that dies is not restarted: the parent stops the others and exits non-zero, and the
process manager (systemd, Kubernetes) restarts the whole.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

from multiprocessing.process import BaseProcess

Serve = Callable[[socket.socket], None]  # runs one worker on an already bound socket; must be picklable


def run_workers(serve: Serve, sock: socket.socket, count: int) -> int:
    """Run `serve(sock)` in `count` spawned processes until they exit; forward stop signals to them."""
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = [context.Process(target=serve, args=(sock,)) for _ in range(count)]
    for worker in workers:
        worker.start()
    stopping = False

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            _terminate(worker)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _supervise(workers, lambda: stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _supervise(workers: list[BaseProcess], stopping: Callable[[], bool]) -> int:
    status = 0
    running = {worker.sentinel: worker for worker in workers}
    while running:
        for sentinel in multiprocessing.connection.wait(list(running)):
            worker = running.pop(sentinel)  # type: ignore[arg-type]
            worker.join()
            if not stopping() and status == 0:
                print(f"llm-sse-proxy: worker {worker.pid} exited ({worker.exitcode}); stopping", file=sys.stderr)
                status = 1
                for other in running.values():
                    _terminate(other)
    return status


def _terminate(worker: BaseProcess) -> None:
    if worker.is_alive():
        worker.terminate()  # SIGTERM: the worker's server ends its streams gracefully
