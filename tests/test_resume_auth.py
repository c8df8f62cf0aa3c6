"""Only the client that started a stream may resume or stop it; someone else's stream looks unknown."""

from __future__ import annotations

from typing import Any

import pytest

from llm_sse_proxy.proxy.admission.auth import Authenticator
from llm_sse_proxy.proxy.config import AuthConfig
from tests.conftest import chat_body, make_config, proxy, read_stream
from tests.test_auth import BEARER, ENV, KEY, OTHER_KEY, Clock, digest
from tests.test_resume_http import read_some

pytestmark = pytest.mark.anyio
OTHER = {"authorization": f"Bearer {OTHER_KEY}"}
SLOW = {"name": "mock", "adapter": "mock", "chunk_delay_ms": 30}


def keyed(**top: Any) -> Any:
    return make_config([SLOW], environ=ENV, auth={"keys": ["${PROXY_KEYS}"]}, **top)


def test_a_signed_key_is_read_from_a_used_or_expired_token_but_not_from_a_forged_one() -> None:
    clock = Clock()
    auth = Authenticator(AuthConfig(key_hashes=frozenset({digest(KEY)}), token_ttl=60), clock=clock)
    kid = auth.from_headers(BEARER)
    assert kid is not None
    token = auth.issue(kid)
    auth.redeem(token)
    clock.now += 3600
    assert auth.signed_key(token) == kid
    body, _, signature = token.rpartition(".")
    forged = signature[:-1] + ("B" if signature.endswith("A") else "A")
    assert auth.signed_key(f"{body}.{forged}") is None
    assert auth.signed_key(f"other.{token}") is None
    assert auth.fingerprint("key:a") != auth.fingerprint("key:b")
    assert KEY not in auth.fingerprint(f"key:{kid}")


async def test_another_key_cannot_read_or_stop_a_stream_and_no_key_is_401() -> None:
    async with proxy(keyed()) as client:
        first, before = await read_some(client, "POST", "/chat", 2, json=chat_body(), headers=BEARER)
        sid = first.headers["x-stream-id"]
        cursor = {"last-event-id": before[-1].id}
        foreign_read = await client.get(f"/streams/{sid}", headers={**OTHER, **cursor})
        foreign_stop = await client.post(f"/streams/{sid}/stop", headers=OTHER)
        anonymous = await client.get(f"/streams/{sid}", headers=cursor)
        _, after = await read_stream(client, "GET", f"/streams/{sid}", headers={**BEARER, **cursor})
    assert foreign_read.status_code == 204
    assert foreign_stop.status_code == 404 and foreign_stop.json()["error"]["type"] == "stream_not_found"
    assert anonymous.status_code == 401
    assert after.events and [e.id for e in before + after.events][-1] == f"{sid}:{len(before) + len(after.events)}"


async def test_event_source_proves_it_with_the_token_its_url_already_carries() -> None:
    async with proxy(keyed()) as client:
        token = (await client.post("/token", headers=BEARER)).json()["token"]
        params = {"prompt": "hi", "token": token}
        first, before = await read_some(client, "GET", "/stream", 2, params=params)
        # EventSource reconnects to the same URL (the same, already used token) with Last-Event-ID.
        again, after = await read_stream(client, "GET", "/stream", params=params,
                                         headers={"last-event-id": before[-1].id})
        other_token = (await client.post("/token", headers=OTHER)).json()["token"]
        foreign = await client.get("/stream", params={"token": other_token},
                                   headers={"last-event-id": before[-1].id})
        stopped = await client.post(f"/streams/{first.headers['x-stream-id']}/stop", params={"token": token})
    assert again.status_code == 200 and after.events
    assert foreign.status_code == 204
    assert stopped.status_code == 200 and stopped.json()["state"] == "finished"
