"""The one way the proxy talks to Redis: a bounded client, and its errors translated at the boundary.

Every wait is bounded so that a Redis that is down, or up but silent, costs a request about a second,
never a hang (resumable-streams.md section 3): a connection attempt and a reply each get
`COMMAND_TIMEOUT` seconds, a failed command is retried once, and a request that finds every pooled
connection busy waits `POOL_WAIT` seconds at most (a `BlockingConnectionPool`; the plain pool raises
once full). Blocking reads (XREAD BLOCK) hold a connection for their whole wait, so they get a pool of
their own with a reply timeout above the longest block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from llm_sse_proxy.proxy.resume.errors import StoreUnavailable

log = logging.getLogger("llm_sse_proxy.redis")

COMMAND_TIMEOUT = 1.0  # seconds; a loopback or same-zone round trip is well under a millisecond
POOL_WAIT = 1.0
RETRIES = 1
MAX_CONNECTIONS = 64

OnError = Callable[[str], None]  # told the operation that failed, for a metric


def connect(url: str, *, max_connections: int = MAX_CONNECTIONS, reply_timeout: float = COMMAND_TIMEOUT) -> Redis:
    """A client on its own bounded pool; nothing connects until the first command."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        socket_timeout=reply_timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


@contextmanager
def shared_state(operation: str, on_error: OnError) -> Iterator[None]:
    """Turn any Redis failure inside the block into StoreUnavailable (503), with one log line and a metric.

    The log names the operation and the error class only: a Redis error message can echo the URL,
    which may hold a password.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        on_error(operation)
        log.warning("redis unavailable during %s (%s)", operation, type(exc).__name__)
        raise StoreUnavailable("the proxy's shared state (Redis) is unavailable; try again shortly") from None


async def unreachable(client: Redis) -> str | None:
    """None when Redis answers PING (readiness, issue 25); else why not, naming host and port only (the URL
    may hold a password). Bounded like every command: about two seconds at worst."""
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        return f"redis at {endpoint(client)} does not answer ({type(exc).__name__})"
    return None


def endpoint(client: Redis) -> str:
    """`host:port` of the client's server (or its socket path), without credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
