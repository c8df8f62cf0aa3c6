"""End users' JWTs (issue 23): real tokens made here with PyJWT, checked by the proxy under uvicorn.

HS256 with a shared secret, RS256 with a JWKS served from a loopback server and from a file. Every bad
token is a 401 whose message says which check failed; a stream that started is finished even when its
token expires on the way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llm_sse_proxy.proxy.config import ConfigError
from tests.conftest import chat_body, make_config, payloads, proxy, read_stream, serve

pytestmark = pytest.mark.anyio

SECRET = "a-shared-secret-of-32-characters-or-more"
ENV = {"JWT_SECRET": SECRET}
HS = {"jwt": {"secret": "${JWT_SECRET}", "audience": "my-app", "issuer": "my-backend", "tier_claim": "plan"}}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "alice", "aud": "my-app", "iss": "my-backend", "iat": now, "exp": now + 600, "plan": "pro"}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def hs256(**changes: Any) -> str:
    return jwt.encode(claims(**changes), SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def jwks(*entries: tuple[Any, str, str]) -> dict[str, Any]:
    keys = []
    for key, kid, alg in entries:
        encoder = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
        keys.append({**json.loads(encoder.to_jwk(key.public_key())), "kid": kid, "alg": alg, "use": "sig"})
    return {"keys": keys}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]


async def test_an_hs256_user_streams_and_the_access_line_names_the_user(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with proxy(make_config(auth=HS, environ=ENV)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=bearer(hs256()))
        anonymous = await client.post("/chat", json=chat_body())
        models = (await client.get("/models")).json()
    assert response.status_code == 200 and payloads(parsed)[-1]["reason"] == "stop"
    assert anonymous.status_code == 401 and "JWT" in anonymous.json()["error"]["message"]
    assert models["auth"] is True
    assert [line["client"] for line in access_lines(caplog)] == ["user:alice"]


BAD_TOKENS = [
    ("expired", lambda: hs256(exp=int(time.time()) - 3600), "has expired"),
    ("not yet valid", lambda: hs256(nbf=int(time.time()) + 3600), "not valid yet"),
    ("wrong audience", lambda: hs256(aud="another-app"), "audience"),
    ("no audience", lambda: hs256(aud=None), "lacks the required claim 'aud'"),
    ("wrong issuer", lambda: hs256(iss="someone-else"), "issuer"),
    ("no expiry", lambda: hs256(exp=None), "lacks the required claim 'exp'"),
    ("alg none", lambda: jwt.encode(claims(), None, algorithm="none"), "unsigned (alg: none)"),
    ("alg not allowed", lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "'HS512' is not one"),
    ("RS256 to an HS256 proxy", lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS256"), "'RS256' is not one"),
    ("another secret", lambda: jwt.encode(claims(), "x" * 40, algorithm="HS256"), "signature does not verify"),
    ("tampered", lambda: _tampered(hs256()), "signature does not verify"),
    ("garbage", lambda: "abc.def.ghi", "malformed"),
    ("no user claim", lambda: hs256(sub=None), "'sub' claim is missing"),
]


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(jwt.utils.base64url_decode(payload))
    body["sub"] = "mallory"
    forged = jwt.utils.base64url_encode(json.dumps(body).encode()).decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(("case", "make", "says"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
async def test_each_bad_token_is_a_401_that_says_which(case: str, make: Any, says: str) -> None:
    token = make()
    async with proxy(make_config(auth=HS, environ=ENV)) as client:
        chat = await client.post("/chat", json=chat_body(), headers=bearer(token))
        trade = await client.post("/token", headers=bearer(token))
        door = await client.post("/v1/chat/completions", headers=bearer(token),
                                 json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    for response in (chat, trade, door):
        assert response.status_code == 401, (case, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert token not in response.text
    assert says in chat.json()["error"]["message"] and chat.json()["error"]["type"] == "unauthorized"
    assert says in door.json()["error"]["message"]  # the OpenAI door's own error shape, same words


async def test_a_jwt_trades_for_a_stream_token_that_eventsource_uses(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    async with proxy(make_config(auth=HS, environ=ENV)) as client:
        traded = await client.post("/token", headers=bearer(hs256(sub="bob")))
        response, parsed = await read_stream(client, "GET", "/stream", params={"token": traded.json()["token"]})
        replayed = await client.get("/stream", params={"token": traded.json()["token"]})
    assert traded.status_code == 200 and response.status_code == 200 and payloads(parsed)[-1]["reason"] == "stop"
    assert replayed.status_code == 401
    assert [line["client"] for line in access_lines(caplog)] == ["user:bob"]


async def test_the_openai_door_takes_a_jwt_as_the_api_key() -> None:
    async with proxy(make_config(auth=HS, environ=ENV)) as client:
        response = await client.post("/v1/chat/completions", headers=bearer(hs256()),
                                     json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


@asynccontextmanager
async def jwks_server(document: dict[str, Any]) -> AsyncIterator[tuple[str, list[int]]]:
    """The identity provider's JWKS on a loopback port; yields its URL and a list counting the fetches."""
    fetched: list[int] = []

    async def keys(request: Request) -> JSONResponse:
        fetched.append(1)
        return JSONResponse(document)

    async with serve(Starlette(routes=[Route("/.well-known/jwks.json", keys)])) as url:
        yield f"{url}/.well-known/jwks.json", fetched


async def test_rs256_and_es256_with_keys_from_a_jwks_url() -> None:
    document = jwks((RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256"))
    async with jwks_server(document) as (url, fetched):
        auth = {"jwt": {"jwks_url": url, "audience": "my-app"}}
        async with proxy(make_config(auth=auth)) as client:
            rs = jwt.encode(claims(iss=None), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
            es = jwt.encode(claims(iss=None), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
            forged = jwt.encode(claims(iss=None), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
            unknown = jwt.encode(claims(iss=None), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-9"})
            hs = jwt.encode(claims(iss=None), "x" * 40, algorithm="HS256", headers={"kid": "rsa-1"})
            answers = [await client.post("/chat", json=chat_body(), headers=bearer(t)) for t in (rs, es, forged, unknown, hs)]
    assert [a.status_code for a in answers] == [200, 200, 401, 401, 401]
    assert "signature does not verify" in answers[2].json()["error"]["message"]
    assert "no key in the JWKS matches" in answers[3].json()["error"]["message"]
    assert "'HS256' is not one" in answers[4].json()["error"]["message"]  # no HMAC with a public key
    assert 1 <= len(fetched) <= 4  # cached: not one fetch per request


async def test_rs256_with_keys_from_a_jwks_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks((RSA_KEY, "rsa-1", "RS256"))))
    async with proxy(make_config(auth={"jwt": {"jwks_file": str(path), "algorithms": ["RS256"]}})) as client:
        good = jwt.encode(claims(aud=None, iss=None), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
        response = await client.post("/chat", json=chat_body(), headers=bearer(good))
    assert response.status_code == 200


async def test_a_jwks_url_that_is_down_is_a_503_not_a_401() -> None:
    async with jwks_server({}) as (url, _):
        pass  # the server is gone: its port refuses
    async with proxy(make_config(auth={"jwt": {"jwks_url": url}})) as client:
        token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
        response = await client.post("/chat", json=chat_body(), headers=bearer(token))
    assert response.status_code == 503 and response.json()["error"]["type"] == "jwks_unavailable"


async def test_a_token_that_expires_mid_stream_finishes_its_stream() -> None:
    slow = [{"name": "slow", "adapter": "mock", "reply": "word " * 40, "chunk_chars": 5, "chunk_delay_ms": 100}]
    expires = int(time.time()) + 2
    token = hs256(exp=expires)
    auth = {"jwt": {**HS["jwt"], "leeway": 0}}
    async with proxy(make_config(slow, auth=auth, environ=ENV)) as client:
        async with client.stream("POST", "/chat", json=chat_body(), headers=bearer(token)) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            first = await anext(lines)
            with anyio.fail_after(20):
                while time.time() < expires + 1.5:  # past exp, by the proxy's clock too
                    await anyio.sleep(0.1)
            refused = await client.post("/chat", json=chat_body(), headers=bearer(token))
            rest = "\n".join([line async for line in lines])
    assert first and refused.status_code == 401 and "expired" in refused.text
    assert '"action":"terminate"' in rest and '"reason":"stop"' in rest


@pytest.mark.parametrize(("jwt_config", "says"), [
    ({"secret": "${JWT_SECRET}", "algorithms": ["RS256"]}, "RS256 does not fit the key"),
    ({"jwks_file": "/nonexistent", "algorithms": ["HS256"]}, "HS256 does not fit the key"),
    ({"secret": "${JWT_SECRET}", "jwks_url": "http://127.0.0.1:1/jwks"}, "exactly one of"),
    ({"secret": SECRET}, "write a ${VAR} reference"),
    ({"secret": "${JWT_SECRET}", "algorithms": ["none"]}, "algorithms"),
])
def test_bad_jwt_config_names_the_field(jwt_config: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(auth={"jwt": jwt_config}, environ=ENV)
    assert says in str(caught.value) and SECRET not in str(caught.value)


async def test_a_users_resumable_stream_is_theirs_alone() -> None:
    async with proxy(make_config(auth=HS, environ=ENV)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(), headers=bearer(hs256()))
        sid = response.headers["x-stream-id"] if "x-stream-id" in response.headers else parsed.events[0].id.split(":")[0]
        mine, replay = await read_stream(client, "GET", f"/streams/{sid}", headers=bearer(hs256()))
        other = await client.get(f"/streams/{sid}", headers=bearer(hs256(sub="mallory")))
        expired = await client.get(f"/streams/{sid}", headers=bearer(hs256(exp=int(time.time()) - 3600)))
    assert mine.status_code == 200 and payloads(replay)[-1]["reason"] == "stop"  # the owner replays it
    assert other.status_code == 204  # another user: as if there were no such stream
    assert expired.status_code == 401 and "expired" in expired.text
