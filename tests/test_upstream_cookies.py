"""Issue 26, item 1: an upstream's cookies are never kept. Every client of the proxy shares one HTTP client
per model; a cookie jar there would hand client A's upstream session to client B.

The upstream is addressed as `localhost`: cookie jars keep no cookies for a bare IP address, which is why
tests on 127.0.0.1 never saw this.
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_sse_proxy.mock_upstream import create_mock_upstream_app
from tests.conftest import proxy, serve
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import DIALECTS, model_at, upstream_config

pytestmark = pytest.mark.anyio


class CookieSetter:
    """The mock upstream, setting a new session cookie on every answer and noting the Cookie each request sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies_sent: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        self.cookies_sent.append(headers.get(b"cookie", b"").decode() or None)
        number = len(self.cookies_sent)

        async def with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cookie = f"session=client-{number}; Path=/; HttpOnly".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, with_cookie)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_one_clients_upstream_cookie_never_reaches_the_next(dialect: str) -> None:
    upstream = CookieSetter(create_mock_upstream_app())
    async with serve(upstream) as url:
        by_name = url.replace("127.0.0.1", "localhost")
        config = upstream_config([model_at(by_name, dialect)])
        async with proxy(config) as client:
            for who in ("client A", "client B", "client C"):
                _, terminate = await ask(client, who, max_tokens=50)
                assert terminate["reason"] == "stop", terminate
    assert upstream.cookies_sent == [None, None, None]
