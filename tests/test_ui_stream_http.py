"""The UI message stream door over real HTTP (uvicorn on a free port): its header and bytes, the shared
admission (errors before the stream in the proxy's shape), who may resume or stop a chat, the newest stream
of a chat, the door with resume off, and the access line `/chat` writes."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

from tests.conftest import RESUME_OFF, make_config, proxy
from tests.test_auth import BEARER, ENV, OTHER_KEY
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

OTHER = {"authorization": f"Bearer {OTHER_KEY}"}
MODEL = {"name": "m", "adapter": "mock", "reply": "One two three.", "chunk_chars": 4, "chunk_delay_ms": 0}
SLOW = {**MODEL, "name": "slow", "chunk_delay_ms": 40}


def ui_body(chat_id: str = "chat-1", text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"id": chat_id, "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": text}]}],
            "trigger": "submit-message", "messageId": None, **extra}


def chunks(raw: str) -> list[dict[str, Any]]:
    blocks = [block for block in raw.split("\n\n") if block and not block.startswith(":")]
    assert blocks[-1] == "data: [DONE]", raw
    return [json.loads(block.removeprefix("data: ")) for block in blocks[:-1]]


def answer_text(items: list[dict[str, Any]]) -> str:
    return "".join(item["delta"] for item in items if item["type"] == "text-delta")


async def test_the_answer_is_the_ui_message_stream_with_its_header() -> None:
    async with proxy(make_config([MODEL])) as client:
        response = await client.post("/api/chat", json=ui_body())
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    items = chunks(response.text)
    assert [item["type"] for item in items][:3] == ["start", "start-step", "text-start"]
    assert answer_text(items) == "One two three." and items[-1]["finishReason"] == "stop"
    assert items[-1]["messageMetadata"]["model"] == "m"


@pytest.mark.parametrize(("request_kwargs", "status", "error_type"), [
    ({"json": ui_body(model="nope")}, 404, "not_found"),
    ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"json": ui_body(text="x" * 2_000_000)}, 413, "payload_too_large"),
    ({"json": ui_body(temperature=0.2)}, 400, "invalid_request"),
    ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "invalid_request"),
])
async def test_errors_before_the_stream_are_the_proxys_json_errors(request_kwargs: dict[str, Any], status: int,
                                                                   error_type: str) -> None:
    async with proxy(make_config([MODEL])) as client:
        response = await client.post("/api/chat", **request_kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == error_type and response.headers["x-request-id"]


async def test_only_the_key_that_started_a_chat_can_resume_or_stop_it() -> None:
    config = make_config([SLOW], environ=ENV, auth={"keys": ["${PROXY_KEYS}"]})
    async with proxy(config) as client:
        refused = await client.post("/api/chat", json=ui_body())
        async with client.stream("POST", "/api/chat", json=ui_body(), headers=BEARER) as started:
            async for _ in started.aiter_bytes():
                break  # it runs on: a resumable generation
        foreign_resume = await client.get("/api/chat/chat-1/stream", headers=OTHER)
        foreign_stop = await client.post("/api/chat/chat-1/stop", headers=OTHER)
        anonymous = await client.get("/api/chat/chat-1/stream")
        own = await client.get("/api/chat/chat-1/stream", headers=BEARER)
        stop = await client.post("/api/chat/chat-1/stop", headers=BEARER)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
    assert foreign_resume.status_code == 204 and foreign_resume.headers["cache-control"] == "no-store"
    assert foreign_stop.status_code == 404 and foreign_stop.json()["error"]["type"] == "stream_not_found"
    assert anonymous.status_code == 401
    assert own.status_code == 200 and answer_text(chunks(own.text)) == "One two three."
    assert stop.status_code == 200 and stop.json() == {"state": "finished", "reason": "stop"}


async def test_a_resume_replays_the_chats_newest_stream() -> None:
    async with proxy(make_config([MODEL])) as client:
        await client.post("/api/chat", json=ui_body(text="first"))
        second = await client.post("/api/chat", json=ui_body(text="second", model="m"))
        probe = await client.head("/api/chat/chat-1/stream")
        resumed = await client.get("/api/chat/chat-1/stream")
        other_chat = await client.get("/api/chat/chat-2/stream")
    assert probe.status_code == 200 and probe.content == b""
    assert resumed.content == second.content  # byte for byte: the frames were encoded once
    assert other_chat.status_code == 204


async def test_with_resume_off_a_dropped_fetch_stops_the_model_and_there_is_nothing_to_resume() -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+delay_ms=50")], **RESUME_OFF)
        async with proxy(config) as client:
            whole = await client.post("/api/chat", json=ui_body())
            async with client.stream("POST", "/api/chat", json=ui_body()) as cut:
                async for piece in cut.aiter_text():
                    if "text-delta" in piece:
                        break
            await up.recorder.wait_closed(1, timeout=5)
            resume = await client.get("/api/chat/chat-1/stream")
            stop = await client.post("/api/chat/chat-1/stop")
    assert whole.headers["x-vercel-ai-ui-message-stream"] == "v1" and chunks(whole.text)[-1]["type"] == "finish"
    assert not up.recorder.attempts[1].finished
    assert resume.status_code == 204 and stop.status_code == 204


async def test_an_upstream_refusal_before_the_first_token_is_an_error_chunk() -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+fail=5:400")])
        async with proxy(config) as client:
            response = await client.post("/api/chat", json=ui_body())
    items = chunks(response.text)
    assert [item["type"] for item in items] == ["start", "start-step", "error"]
    assert items[-1]["errorText"]


async def test_the_door_writes_the_access_line_chat_writes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy.access")
    async with proxy(make_config([MODEL])) as client:
        await client.post("/api/chat", json=ui_body(), headers={"x-request-id": "ui-door-1"})
        with anyio.fail_after(5):
            while not any("ui-door-1" in r.getMessage() for r in caplog.records):
                await anyio.sleep(0.01)
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if "ui-door-1" in r.getMessage()]
    assert line["event"] == "stream" and line["model"] == "m" and line["reason"] == "stop" and line["chunks"] == 4


async def test_the_path_is_configurable_and_the_door_can_be_off() -> None:
    async with proxy(make_config([MODEL], ui_stream={"path": "/ai/chat"})) as client:
        moved = await client.post("/ai/chat", json=ui_body())
        default = await client.post("/api/chat", json=ui_body())
    async with proxy(make_config([MODEL], ui_stream={"enabled": False})) as client:
        off = await client.post("/api/chat", json=ui_body())
    assert moved.status_code == 200 and answer_text(chunks(moved.text)) == "One two three."
    assert default.status_code == 404 and off.status_code == 404


async def test_a_replay_whose_start_was_trimmed_ends_with_an_error_chunk() -> None:
    # Paced, so the first reader keeps up and the store may drop what it has sent.
    config = make_config([{**MODEL, "chunk_chars": 1, "chunk_delay_ms": 10}], resume={"max_events_per_stream": 4})
    async with proxy(config) as client:
        whole = await client.post("/api/chat", json=ui_body())
        replay = await client.get("/api/chat/chat-1/stream")
    assert answer_text(chunks(whole.text)) == "One two three."  # its own reader kept every frame it had not read
    assert chunks(replay.text) == [{"type": "error", "errorText": "the start of this answer is no longer kept "
                                    "(resume.max_events_per_stream); send the message again"}]
