"""`llm-sse-proxy`: run the proxy, or `llm-sse-proxy mock-upstream` to run a fake OpenAI server."""

from __future__ import annotations

import argparse
import functools
import logging
import socket
import sys
from importlib.metadata import PackageNotFoundError, version

from llm_sse_proxy.proxy.telemetry import access_log
from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.config import Config, ConfigError, load_config
from llm_sse_proxy.proxy.telemetry.log_format import TEXT_FORMAT, use_format
from llm_sse_proxy.proxy.doors.response import Shutdown
from llm_sse_proxy.proxy.server.serve import BindError, GracefulServer, bind, fit_file_limit, uvicorn_config
from llm_sse_proxy.proxy.server.starter import REAL_MODEL_HINT, ConfigChoice, choose_config, write_starter
from llm_sse_proxy.proxy.server.summary import startup_summary
from llm_sse_proxy.proxy.state.redis import probe
from llm_sse_proxy.proxy.server.workers import run_workers

DESCRIPTION = """Stream LLM answers to browsers as Server-Sent Events.

Serves POST /chat (JSON) and GET /stream?prompt=... (EventSource) on one tiny event schema:
data: {"text": ...} per delta, then one data: {"action": "terminate", "reason": ...}.

Other commands:
  llm-sse-proxy init [PATH]                 write a commented starter config for a real upstream
  llm-sse-proxy mock-upstream --port 9000   run a fake OpenAI-compatible server with fault injection
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="llm-sse-proxy", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML config file (default: ./config.yaml, else the built-in offline mock)")
    parser.add_argument("--host", help="interface to bind (default: server.host in the config)")
    parser.add_argument("--port", type=_port, help="port to bind (default: server.port in the config)")
    parser.add_argument("--mock", action="store_true", help="point every model at the offline mock adapter")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workers", type=_positive, default=1, help="processes sharing the port (default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser.parse_args(argv)


def _version() -> str:
    try:
        return version("llm-sse-proxy")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _port(text: str) -> int:
    # The same range as server.port in the config; uvicorn would bind 99999 modulo 65536.
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError("must be a whole number from 0 to 65535")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mock-upstream"]:
        from llm_sse_proxy.mock_upstream import main as mock_upstream_main

        return mock_upstream_main(argv[1:])
    if argv[:1] == ["init"]:
        return write_starter(argv[1:])
    args = parse_args(argv)
    setup_logging(args.log_level)
    choice = choose_config(args.config)
    args.config = str(choice.path)  # the --workers processes read the same file
    try:
        config = load_config(args.config, mock=args.mock)
    except ConfigError as exc:
        print(f"llm-sse-proxy: config error: {exc}", file=sys.stderr)
        return 2
    use_log_format(config)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    try:
        sock = bind(host, port)
    except BindError as exc:
        print(f"llm-sse-proxy: {exc}", file=sys.stderr)
        return 1
    fit_file_limit(config)
    print_summary(config, args, choice, host, sock.getsockname()[1])
    try:
        if args.workers > 1:
            if config.resume.enabled and config.resume.store == "memory":
                # A reconnect may land on another worker, which does not have the stream: it gets 204.
                print("llm-sse-proxy: WARNING: resume.store is memory, so a stream can only be resumed on the worker "
                      "that started it; with --workers use resume.store: redis", file=sys.stderr)
            # Shared by the workers; each builds its own app.
            return run_workers(functools.partial(serve_worker, args), sock, args.workers)
        serve(config, args, [sock])
    except KeyboardInterrupt:
        return 130  # Ctrl-C: the server has already stopped; a traceback would only alarm
    return 0


def print_summary(config: Config, args: argparse.Namespace, choice: ConfigChoice, host: str, port: int) -> None:
    where = f"built-in, the offline mock (no config.yaml here); {REAL_MODEL_HINT}" if choice.built_in else args.config
    url = config.resume.redis_url
    problem = probe(url.get_secret_value()) if url is not None else None  # a down Redis is a warning, not a surprise
    summary = startup_summary(config, config_file=where, mock=args.mock, host=host, port=port, redis_problem=problem)
    if config.logging.format == "json":
        for line in summary:  # every line on stderr a JSON object, as asked
            level = logging.WARNING if line.startswith("WARNING: ") else logging.INFO
            logging.getLogger("llm_sse_proxy").log(level, "%s", line.removeprefix("WARNING: "))
        return
    print("".join(f"llm-sse-proxy: {line}\n" for line in summary), end="", file=sys.stderr)


def serve(config: Config, args: argparse.Namespace, sockets: list[socket.socket]) -> None:
    shutdown = Shutdown(grace=config.server.shutdown_grace)
    app = create_app(config, shutdown=shutdown)
    server = GracefulServer(uvicorn_config(app, config, args.log_level), shutdown, config.server.drain_delay)
    server.run(sockets)


def serve_worker(args: argparse.Namespace, sock: socket.socket) -> None:
    """One `--workers` process: it reads the config itself, then serves on the parent's socket."""
    setup_logging(args.log_level)
    config = load_config(args.config, mock=args.mock)
    use_log_format(config)
    fit_file_limit(config)
    try:
        serve(config, args, [sock])
    except KeyboardInterrupt:
        pass  # the terminal's Ctrl-C reaches every worker; the parent reports the exit


def setup_logging(level: str) -> None:
    """The same in a single process and in each `--workers` process."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per upstream request is noise
    configure_access_log()


def use_log_format(config: Config) -> None:
    """`logging.format` for every line on stderr, and the request id on each line about a stream."""
    use_format(config.logging.format, logging.getLogger().handlers)


def configure_access_log() -> None:
    """Access lines are bare JSON, one per stream, whatever --log-level says (logging.access_log turns them off)."""
    handler = access_log.LineHandler()
    handler.setFormatter(logging.Formatter())  # the message alone: each access line is already a JSON object
    access = logging.getLogger("llm_sse_proxy.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
