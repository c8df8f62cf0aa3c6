"""The one Redis client of a process: one bounded pool that every Redis-backed piece shares (issue 21),
and its errors translated at the boundary.

`create_app` builds one `SharedRedis` when `resume.redis_url` is set and hands it to the rate buckets,
the stream slots and token nonces, the routing state (breakers, quotas), the budgets and the stream store; the lifespan closes it last. So a
process (each `--workers` process) holds at most `resume.redis_connections` connections to Redis,
whatever features are on. Connections are named `llm-sse-proxy:<host>:<pid>` (CLIENT LIST shows whose).

Every wait is bounded so that a Redis that is down, or up but silent, costs a request about a second,
never a hang (resumable-streams.md section 3): a connection attempt and a reply each get
`COMMAND_TIMEOUT` seconds, a failed command is retried once, and a request that finds every pooled
connection busy waits `POOL_WAIT` seconds at most (a `BlockingConnectionPool`; the plain pool raises
once full). A blocking read (XREAD BLOCK) holds a pooled connection and reads its reply with a timeout
of its own, the block plus `COMMAND_TIMEOUT`; the store runs one such read per process, not one per
reader (proxy/state/streams/redis_follower.py). Log lines name the endpoint as host:port, never the URL (it may
hold a password).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from llm_sse_proxy.proxy.config import ResumeConfig
from llm_sse_proxy.proxy.resume.errors import StoreUnavailable

log = logging.getLogger("llm_sse_proxy.redis")

COMMAND_TIMEOUT = 1.0  # seconds; a loopback or same-zone round trip is well under a millisecond
POOL_WAIT = 1.0
RETRIES = 1
MAX_CONNECTIONS = 64

OnError = Callable[[str], None]  # told the operation that failed, for a metric


def _ignore(operation: str) -> None:
    return None


def replica_name() -> str:
    """This process, as other replicas and CLIENT LIST see it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def endpoint(url: str) -> str:
    """`host:port` of a Redis URL (the socket's path for unix://), never its user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    host = parts.hostname or "localhost"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SharedRedis:
    """The process's Redis client on one bounded pool; nothing connects until the first command."""

    def __init__(self, url: str, *, max_connections: int = MAX_CONNECTIONS, name: str = "",
                 on_error: OnError = _ignore) -> None:
        self.endpoint = endpoint(url)
        self.on_error = on_error
        self.max_connections = max_connections
        self.pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES),
            client_name=f"llm-sse-proxy:{name or replica_name()}",
        )
        self.client = Redis.from_pool(self.pool)  # the client owns the pool: aclose() closes its connections

    async def hold_connection(self) -> AbstractConnection:
        """A pooled connection kept by its caller until `give_back`: the store's writer, and its reader loop,
        which reads its blocking XREAD's reply with a timeout of its own (`read_response(timeout=...)`)."""
        return await self.pool.get_connection()

    async def give_back(self, connection: AbstractConnection) -> None:
        await connection.disconnect(nowait=True)
        await self.pool.release(connection)

    @contextmanager
    def failures(self, operation: str) -> Iterator[None]:
        """Turn any Redis failure inside the block into StoreUnavailable (503), with one log line and a metric."""
        try:
            yield
        except (RedisError, OSError) as exc:
            self.failed(operation, exc)
            raise StoreUnavailable("the proxy's shared state (Redis) is unavailable; try again shortly") from None

    def failed(self, operation: str, exc: BaseException, consequence: str = "") -> None:
        """Count and log a Redis failure: the operation, the endpoint and the error class, never its
        message (it can echo the URL). `consequence` says what the proxy does about it."""
        self.on_error(operation)
        then = f"; {consequence}" if consequence else ""
        log.warning("redis at %s unavailable during %s (%s)%s", self.endpoint, operation, type(exc).__name__, then)

    async def unreachable(self) -> str | None:
        """None when Redis answers PING (readiness, issue 25); else why not, naming host and port only (the URL
        may hold a password). Bounded like every command: about two seconds at worst."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            return f"redis at {self.endpoint} does not answer ({type(exc).__name__})"
        return None

    async def __aenter__(self) -> SharedRedis:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()


def probe(url: str, timeout: float = COMMAND_TIMEOUT) -> str | None:
    """At start (issue 26 item 12): None if Redis answers PING within `timeout`, else the error's class,
    never its message (it can echo the URL)."""
    client = SyncRedis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        return type(exc).__name__
    finally:
        client.close()
    return None


def shared_redis_for(resume: ResumeConfig, *, on_error: OnError) -> SharedRedis | None:
    """The process's one client, or None without `resume.redis_url`."""
    if resume.redis_url is None:
        return None
    return SharedRedis(resume.redis_url.get_secret_value(), max_connections=resume.redis_connections, on_error=on_error)
