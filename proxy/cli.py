"""`llm-sse-proxy`: run the proxy, or `llm-sse-proxy mock-upstream` to run a fake OpenAI server."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import socket
import sys
from types import FrameType

import uvicorn

from proxy.app import create_app
from proxy.config import Config, ConfigError, load_config
from proxy.response import Shutdown
from proxy.workers import run_workers

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

DESCRIPTION = """Stream LLM answers to browsers as Server-Sent Events.

Serves POST /chat (JSON) and GET /stream?prompt=... (EventSource) on one tiny event schema:
data: {"text": ...} per delta, then one data: {"action": "terminate", "reason": ...}.

Other commands:
  llm-sse-proxy mock-upstream --port 9000   run a fake OpenAI-compatible server with fault injection
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="llm-sse-proxy", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="config.yaml", help="YAML config file (default: %(default)s)")
    parser.add_argument("--host", help="interface to bind (default: server.host in the config)")
    parser.add_argument("--port", type=int, help="port to bind (default: server.port in the config)")
    parser.add_argument("--mock", action="store_true", help="point every model at the offline mock adapter")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workers", type=_positive, default=1, help="processes sharing the port (default: %(default)s)")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mock-upstream"]:
        from mock_upstream import main as mock_upstream_main

        return mock_upstream_main(argv[1:])
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_config(args.config, mock=args.mock)
    except ConfigError as exc:
        print(f"llm-sse-proxy: config error: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if args.workers > 1:
        if config.resume.enabled and config.resume.store == "memory":
            # A reconnect may land on another worker, which does not have the stream: it gets 204.
            print("llm-sse-proxy: WARNING: resume.store is memory, so a stream can only be resumed on the worker "
                  "that started it; with --workers use resume.store: redis", file=sys.stderr)
        # Bound once here and shared; each worker builds its own app (the import string is unused).
        sock = uvicorn_config("proxy.app:create_app", host, port, config, args.log_level).bind_socket()
        return run_workers(functools.partial(serve_worker, args), sock, args.workers)
    serve(config, args, host, port)
    return 0


def serve(config: Config, args: argparse.Namespace, host: str, port: int, sockets: list[socket.socket] | None = None) -> None:
    shutdown = Shutdown(grace=config.server.shutdown_grace)
    app = create_app(config, shutdown=shutdown)
    server = GracefulServer(uvicorn_config(app, host, port, config, args.log_level), shutdown)
    server.run(sockets)


def serve_worker(args: argparse.Namespace, sock: socket.socket) -> None:
    """One `--workers` process: it reads the config itself, then serves on the parent's socket."""
    setup_logging(args.log_level)
    config = load_config(args.config, mock=args.mock)
    serve(config, args, "", 0, [sock])


def setup_logging(level: str) -> None:
    """The same in a single process and in each `--workers` process."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per upstream request is noise
    configure_access_log()


def configure_access_log() -> None:
    """Access lines are bare JSON, one per stream, whatever --log-level says (logging.access_log turns them off)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("llm_sse_proxy.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def uvicorn_config(app: object, host: str, port: int, config: Config, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        # Streams get the grace period to end with a terminate; uvicorn would otherwise wait forever.
        timeout_graceful_shutdown=config.server.shutdown_grace + 2,
    )


class GracefulServer(uvicorn.Server):
    """Tells open streams that the server is stopping, so they can end with a terminate."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self.shutdown_signal = shutdown
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        # Everything built so far (the imports, the app, its clients) lives as long as the process:
        # freezing it keeps the collector from rescanning it in every full collection, each a pause for
        # every open stream (see README, Performance). Collect first, so no start-up garbage is frozen.
        gc.collect()
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            # A signal handler must not touch the loop directly; this wakes it safely.
            self._loop.call_soon_threadsafe(self.shutdown_signal.begin)
        super().handle_exit(sig, frame)
