"""Client keys and one-stream tokens: tables for the pure parts, the whole flow over HTTP."""

from __future__ import annotations

import hashlib

import pytest

from llm_sse_proxy.proxy.admission.auth import MAX_USED_TOKENS, Authenticator
from llm_sse_proxy.proxy.config import AuthConfig, ConfigError
from llm_sse_proxy.proxy.errors import Overloaded, Unauthorized
from tests.conftest import assert_one_terminate_last, chat_body, make_config, payloads, proxy, read_stream

pytestmark = pytest.mark.anyio

KEY = "test-client-key-0123456789abcdef"
OTHER_KEY = "another-client-key-fedcba9876543210"
ENV = {"PROXY_KEYS": f"{KEY}, {OTHER_KEY}"}
BEARER = {"authorization": f"Bearer {KEY}"}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def authenticator(clock: Clock) -> Authenticator:
    return Authenticator(AuthConfig(key_hashes=frozenset({digest(KEY)}), token_ttl=60), clock=clock)


@pytest.mark.parametrize(
    ("header", "ok"),
    [(f"Bearer {KEY}", True), (f"bearer {KEY}", True), (f"Bearer  {KEY} ", True), (f"Bearer {KEY}x", False),
     (KEY, False), (f"Basic {KEY}", False), ("Bearer ", False), ("", False), ("Bearer \udcff", False)],
)
def test_keys_are_checked_by_digest(header: str, ok: bool) -> None:
    auth = authenticator(Clock())
    assert (auth.from_headers({"authorization": header}) is not None) is ok


def test_a_token_is_good_for_one_stream_within_its_lifetime() -> None:
    clock = Clock()
    auth = authenticator(clock)
    kid = auth.from_headers(BEARER)
    token = auth.issue(kid)
    assert auth.redeem(token) == kid
    with pytest.raises(Unauthorized, match="already used"):
        auth.redeem(token)
    late = auth.issue(kid)
    clock.now += 61
    with pytest.raises(Unauthorized, match="expired"):
        auth.redeem(late)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
    lambda t: "other" + t[t.index("."):],  # key id
    lambda t: t.replace(".", ".9", 1),  # expiry
    lambda t: "", lambda t: "....", lambda t: "a.b.c", lambda t: t + ".extra",
    lambda t: t[:-1] + "é", lambda t: "a.²³.c.d", lambda t: t + "\udcff",
])
def test_a_forged_token_is_refused(mangle) -> None:
    auth = authenticator(Clock())
    with pytest.raises(Unauthorized):
        auth.redeem(mangle(auth.issue("abc")))


def test_a_token_with_unicode_digits_in_its_expiry_is_refused() -> None:
    auth = authenticator(Clock())
    body = "abc.²³.nonce"
    with pytest.raises(Unauthorized):
        auth.redeem(f"{body}.{auth._sign(body)}")


def test_a_token_from_another_secret_is_refused() -> None:
    clock = Clock()
    assert authenticator(clock).issue("abc")  # each process without token_secret has its own random one
    with pytest.raises(Unauthorized):
        authenticator(clock).redeem(authenticator(clock).issue("abc"))


def test_used_tokens_are_forgotten_once_expired_and_the_store_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr("llm_sse_proxy.proxy.admission.auth.MAX_USED_TOKENS", 3)
    clock = Clock()
    auth = authenticator(clock)
    for _ in range(3):
        auth.redeem(auth.issue("k"))
    with pytest.raises(Overloaded):
        auth.redeem(auth.issue("k"))  # full: refuse rather than forget a used token early
    clock.now += 61
    auth.redeem(auth.issue("k"))
    assert len(auth.used._used) == 1
    assert MAX_USED_TOKENS >= 10_000


@pytest.mark.parametrize(
    ("auth", "environ", "message"),
    [
        ({"keys": [KEY]}, {}, "auth.keys[0]: write a ${VAR} reference or a sha256:<64 hex> digest"),
        ({"keys": ["${PROXY_KEYS}"]}, {"PROXY_KEYS": " , "}, "auth.keys[0]: ${PROXY_KEYS} holds no keys"),
        ({"keys": ["${PROXY_KEYS}"]}, {"PROXY_KEYS": "short"}, "at least 16 characters"),
        ({"keys": ["${PROXY_KEYS}"]}, {"PROXY_KEYS": "clé-de-seize-caractères"}, "printable ASCII"),  # issue 16
        ({"keys": ["${PROXY_KEYS}"]}, {"PROXY_KEYS": f"{KEY},key with spaces inside"}, "printable ASCII"),
        ({"keys": ["${PROXY_KEYS}"]}, {"PROXY_KEYS": "tab\there-0123456789"}, "printable ASCII"),
        ({"keys": ["${PROXY_KEYS}"]}, {}, "environment variable PROXY_KEYS is not set"),
        ({"keys": ["sha256:abc"]}, {}, "auth.keys[0]:"),
        ({"keys": "x"}, {}, "auth.keys: must be a list"),
        ({"token_secret": "in-the-file-" * 4}, {}, "auth.token_secret: write a ${VAR} reference"),
        ({"token_secret": "${S}"}, {"S": "short"}, "auth.token_secret:"),
        ({"token_ttl": 0}, {}, "auth.token_ttl:"),
        ({"colour": "blue"}, {}, "auth.colour: unknown key (known: admin_keys, jwt, keys, token_secret, token_ttl)"),
    ],
)
def test_bad_auth_config_names_the_field(auth: dict, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(auth=auth, environ=environ)
    assert message in str(caught.value)
    assert KEY not in str(caught.value) and "in-the-file" not in str(caught.value)


def test_keys_from_the_environment_and_digests_combine() -> None:
    config = make_config(auth={"keys": ["${PROXY_KEYS}", f"sha256:{digest('third-key-000000000000').upper()}"]},
                         environ=ENV)
    assert config.auth.key_hashes == {digest(KEY), digest(OTHER_KEY), digest("third-key-000000000000")}


async def test_without_keys_auth_is_off() -> None:
    async with proxy(make_config()) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    assert response.status_code == 200 and assert_one_terminate_last(payloads(parsed))["reason"] == "stop"


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/chat", {"json": chat_body()}),
    ("POST", "/chat", {"json": chat_body(), "headers": {"authorization": "Bearer wrong-key-0000000000000"}}),
    ("GET", "/stream", {}),
    ("GET", "/stream", {"params": {"token": "not.a.real.token"}}),
    ("GET", "/stream", {"headers": {"authorization": f"Bearer {KEY}"[:-1]}}),
    ("POST", "/token", {}),
])
async def test_with_keys_a_request_without_a_valid_one_gets_401(method: str, path: str, kwargs: dict) -> None:
    async with proxy(make_config(auth={"keys": ["${PROXY_KEYS}"]}, environ=ENV)) as client:
        response = await client.request(method, path, **kwargs)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "unauthorized"


async def test_bearer_keys_stream_and_a_token_opens_exactly_one_get_stream() -> None:
    async with proxy(make_config(auth={"keys": ["${PROXY_KEYS}"]}, environ=ENV)) as client:
        posted, posted_stream = await read_stream(client, "POST", "/chat", json=chat_body(),
                                                  headers={"authorization": f"Bearer {OTHER_KEY}"})
        issued = await client.post("/token", headers=BEARER)
        token = issued.json()["token"]
        got, got_stream = await read_stream(client, "GET", "/stream", params={"token": token, "prompt": "x"})
        again = await client.get("/stream", params={"token": token})
        header_get, _ = await read_stream(client, "GET", "/stream", headers=BEARER)
    assert posted.status_code == 200 and assert_one_terminate_last(payloads(posted_stream))["reason"] == "stop"
    assert issued.status_code == 200 and issued.json()["expires_in"] == 60
    assert '"expires_in":60}' in issued.text  # an int, not 60.0 (issue 26)
    assert issued.headers["cache-control"] == "no-store"
    assert got.status_code == 200 and assert_one_terminate_last(payloads(got_stream))["reason"] == "stop"
    assert again.status_code == 401 and "already used" in again.json()["error"]["message"]
    assert header_get.status_code == 200


async def test_cors_allowlist_still_applies_with_auth() -> None:
    config = make_config(auth={"keys": ["${PROXY_KEYS}"]}, environ=ENV, server={"cors_origins": ["https://app.test"]})
    async with proxy(config) as client:
        preflight = await client.options("/token", headers={
            "origin": "https://app.test", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization"})
        foreign = await client.options("/token", headers={
            "origin": "https://evil.test", "access-control-request-method": "POST"})
    assert preflight.status_code == 200 and "authorization" in preflight.headers["access-control-allow-headers"]
    assert foreign.status_code == 400
