"""The HTTP server: uvicorn, set up from the config, on a socket bound before anything else starts.

Binding first means a port that is taken (or not a port) fails in one line, before the app and its
upstream clients start. The protocol is uvicorn's httptools one with the connection limits of
`proxy/server/http_protocol.py`; forwarded headers are believed only from the addresses the config lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import resource
import signal
import socket
from types import FrameType

import uvicorn

from llm_sse_proxy.proxy.config import Config
from llm_sse_proxy.proxy.server.http_protocol import ConnectionLimits, limited_protocol
from llm_sse_proxy.proxy.doors.response import Shutdown

log = logging.getLogger("llm_sse_proxy")
FORCED_STOP_WAIT = 1.0  # seconds a forced stop gives streams to send their terminate
SPARE_FILES = 64  # descriptors for everything that is not a connection: logs, the listening socket, ...


class BindError(Exception):
    """The address cannot be listened on; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or BindError with a one-line hint."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(_bind_problem(host, port, exc)) from None
    sock.set_inheritable(True)  # --workers hands it to their processes
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use (another proxy?); choose another with --port"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); use --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no such address on this machine; check --host"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def uvicorn_config(app: object, config: Config, log_level: str) -> uvicorn.Config:
    server = config.server
    trusted = server.forwarded_allow_ips
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=limited_protocol(ConnectionLimits.from_config(config)),
        ws="none",  # no WebSocket routes: an upgrade request is served as an ordinary request
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=server.keep_alive_timeout,  # type: ignore[arg-type]  # a float works: call_later
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise, and its FORWARDED_ALLOW_IPS
        # variable would be a second place to configure it: the config decides, and says nobody by default.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=list(trusted),
        # Streams get the grace period to end with a terminate; uvicorn would otherwise wait forever.
        timeout_graceful_shutdown=server.shutdown_grace + 2,  # type: ignore[arg-type]
        # uvicorn's own lines go to the root handler, in the proxy's format, text or JSON
        # (proxy/telemetry/log_format.py): one line format on stderr (issue 26), not uvicorn's "INFO:     …" too.
        log_config=None,
    )


def fit_file_limit(config: Config) -> None:
    """Raise the soft descriptor limit so the connection cap, not EMFILE, is what refuses connections.

    Each stream holds two descriptors (its client and its upstream), every other connection one.
    """
    limits = ConnectionLimits.from_config(config)
    wanted = limits.max_connections + config.limits.max_streams + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("the open-file limit (%d) is below server.max_connections + limits.max_streams + %d (%d): "
                    "raise `ulimit -n` or lower them", soft, SPARE_FILES, wanted)


class GracefulServer(uvicorn.Server):
    """Tells open streams that the server is stopping, so they can end with a terminate.

    The first SIGTERM or Ctrl-C gives them `server.shutdown_grace`; a second Ctrl-C (uvicorn's forced
    exit) ends them at once, still with their terminate where the client is reading. With a
    `drain_delay`, the first signal only makes `/readyz` answer 503 (so a load balancer stops sending
    streams here) while the server goes on serving; the stop begins after the delay, or at a second signal.
    """

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown, drain_delay: float = 0.0) -> None:
        super().__init__(config)
        self.shutdown_signal = shutdown
        self.drain_delay = drain_delay
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_started = False

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        for sock in sockets or []:
            host, port = sock.getsockname()[:2]
            log.info("llm-sse-proxy listening on http://%s:%d (Ctrl-C to stop)", _url_host(host), port)
        # Everything built so far (the imports, the app, its clients) lives as long as the process:
        # freezing it keeps the collector from rescanning it in every full collection, each a pause for
        # every open stream (see docs/performance.md). Collect first, so no start-up garbage is frozen.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().shutdown(sockets)
        if self.force_exit:
            # uvicorn stops waiting at once; the streams, already told to end, need a moment to say so.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + FORCED_STOP_WAIT
            while self.server_state.tasks and loop.time() < deadline:
                await asyncio.sleep(0.02)
            # uvicorn skips the app's shutdown on a forced exit; its lifespan task, left waiting, is then
            # cancelled as asyncio.run ends, and uvicorn logs that as a traceback (issue 26). Run it, bounded:
            # it closes the upstream clients and the store, which the streams, already ended, no longer use.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lifespan.shutdown(), FORCED_STOP_WAIT)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        forced = self.should_exit and sig == signal.SIGINT  # uvicorn's rule for a forced exit
        if self._loop is not None and self.drain_delay > 0 and not self._drain_started:
            self._drain_started = True  # a second signal during the delay stops at once
            self._loop.call_soon_threadsafe(self._drain, sig)
            return
        if self._loop is not None:
            # A signal handler must not touch the loop directly; this wakes it safely.
            self._loop.call_soon_threadsafe(self.shutdown_signal.end_now if forced else self.shutdown_signal.begin)
        super().handle_exit(sig, frame)

    def _drain(self, sig: int) -> None:
        self.shutdown_signal.drain()
        log.info("stopping in %g s (server.drain_delay): /readyz answers 503 meanwhile", self.drain_delay)
        assert self._loop is not None
        self._loop.call_later(self.drain_delay, self._stop_after_drain, sig)

    def _stop_after_drain(self, sig: int) -> None:
        if not self.should_exit:  # a second signal may have stopped it already
            self.handle_exit(sig, None)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
