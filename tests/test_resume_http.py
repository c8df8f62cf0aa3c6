"""Resumable streams over real HTTP: ids, reconnects without loss or duplicates, fan-out, stop, grace.

The proxy runs under uvicorn and talks to the real mock upstream (paced with `delay_ms`), whose
recorder says when the proxy closed its connection and how many requests it got.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from tests.conftest import assert_one_terminate_last, chat_body, payloads, proxy, read_stream
from tests.sse_parse import Event, parse_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio
HANG = 10


def resumable(up: Any, fault: str = "delay_ms=20", **resume: Any) -> Any:
    return upstream_config([up.model("gpt", f"gpt+{fault}")], resume={"enabled": True, **resume})


async def read_some(client: httpx2.AsyncClient, method: str, url: str, count: int,
                    **kwargs: Any) -> tuple[httpx2.Response, list[Event]]:
    """Read `count` complete events (all if fewer), then drop the connection."""
    raw = b""
    async with client.stream(method, url, **kwargs) as response:
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(parse_stream(raw).events) >= count:
                break
    return response, parse_stream(raw).events[:count]


def seqs(events: list[Event], sid: str) -> list[int]:
    assert all(e.id.startswith(f"{sid}:") for e in events), [e.id for e in events]
    return [int(e.id.rpartition(":")[2]) for e in events]


def text_of(events: list[Event]) -> str:
    return "".join(json.loads(e.data).get("text", "") for e in events)


async def test_every_event_carries_the_stream_id_and_a_contiguous_seq() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=0")) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(),
                                             headers={"origin": "http://example.test"})
    sid = response.headers["x-stream-id"]
    assert len(sid) == 22 and "x-stream-id" in response.headers["access-control-expose-headers"]
    assert seqs(parsed.events, sid) == list(range(1, len(parsed.events) + 1))
    assert text_of(parsed.events) == DEFAULT_REPLY
    assert assert_one_terminate_last(payloads(parsed))["reason"] == "stop"
    assert response.headers["cache-control"] == "no-cache"  # the article's headers; resume answers are no-store


@pytest.mark.parametrize("cut_after", [1, 5, 12])
@pytest.mark.parametrize("how", ["header", "query", "bare_seq"])
async def test_a_cut_stream_resumes_with_exactly_the_missing_events(cut_after: int, how: str) -> None:
    async with mock_upstream() as up, proxy(resumable(up)) as client:
        first, before = await read_some(client, "POST", "/chat", cut_after, json=chat_body())
        sid = first.headers["x-stream-id"]
        cursor = before[-1].id if how != "bare_seq" else before[-1].id.rpartition(":")[2]
        kwargs: dict[str, Any] = ({"params": {"lastEventId": cursor}} if how == "query"
                                  else {"headers": {"last-event-id": cursor}})
        second, after = await read_stream(client, "GET", f"/streams/{sid}", **kwargs)
        assert second.status_code == 200
        assert up.recorder.count() == 1  # the same generation: nothing asked twice
    events = before + after.events
    assert seqs(events, sid) == list(range(1, len(events) + 1))
    assert text_of(events) == DEFAULT_REPLY
    assert_one_terminate_last([json.loads(e.data) for e in events])


async def test_a_reader_that_leaves_before_any_event_reads_from_the_start() -> None:
    async with mock_upstream() as up, proxy(resumable(up)) as client:
        first, before = await read_some(client, "POST", "/chat", 0, json=chat_body())
        sid = first.headers["x-stream-id"]
        _, after = await read_stream(client, "GET", f"/streams/{sid}")
    assert before == [] and text_of(after.events) == DEFAULT_REPLY
    assert seqs(after.events, sid) == list(range(1, len(after.events) + 1))


async def test_a_finished_stream_replays_its_tail_then_answers_204() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=0")) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        sid, last = response.headers["x-stream-id"], parsed.events[-1].id
        _, tail = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": parsed.events[-3].id})
        assert [e.id for e in tail.events] == [e.id for e in parsed.events[-2:]]
        done = await client.get(f"/streams/{sid}", headers={"last-event-id": last})
        again = await client.get("/stream", headers={"last-event-id": last})  # EventSource's auto-reconnect
        posted = await client.post("/chat", json=chat_body(), headers={"last-event-id": last})  # fetch-event-source's
        assert (done.status_code, again.status_code, posted.status_code) == (204, 204, 204)
        assert done.headers["cache-control"] == "no-store"
        assert up.recorder.count() == 1  # no reconnect started a new generation


async def test_the_event_source_path_resumes_a_cut_stream() -> None:
    async with mock_upstream() as up, proxy(resumable(up)) as client:
        first, before = await read_some(client, "GET", "/stream", 4, params={"prompt": "hi", "model": "gpt"})
        sid = first.headers["x-stream-id"]
        again, after = await read_stream(client, "GET", "/stream", params={"prompt": "hi", "model": "gpt"},
                                         headers={"last-event-id": before[-1].id})
        assert again.status_code == 200 and up.recorder.count() == 1
    assert text_of(before + after.events) == DEFAULT_REPLY
    assert seqs(before + after.events, sid) == list(range(1, len(before) + len(after.events) + 1))


@pytest.mark.parametrize("cursor", ["abc", "SID:-1", "SID:" + "9" * 30, "QQQQQQQQQQQQQQQQQQQQQQ:1"])
async def test_bad_cursors_get_400_json(cursor: str) -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=0")) as client:
        response, _ = await read_stream(client, "POST", "/chat", json=chat_body())
        sid = response.headers["x-stream-id"]
        bad = await client.get(f"/streams/{sid}", headers={"last-event-id": cursor.replace("SID", sid)})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_last_event_id"
    assert cursor.replace("SID", sid) not in bad.text


async def test_an_unknown_stream_is_204_and_starts_nothing() -> None:
    async with mock_upstream() as up, proxy(resumable(up)) as client:
        unknown = "A" * 22
        answers = [await client.get(f"/streams/{unknown}"),
                   await client.get(f"/streams/{unknown}", headers={"last-event-id": f"{unknown}:3"}),
                   await client.get("/stream", headers={"last-event-id": f"{unknown}:3"}),
                   await client.get("/streams/not-a-sid")]
        stop = await client.post(f"/streams/{unknown}/stop")
        assert up.recorder.count() == 0
    assert [a.status_code for a in answers] == [204, 204, 204, 204]
    assert stop.status_code == 404 and stop.json()["error"]["type"] == "stream_not_found"


async def test_several_readers_each_get_every_event_once_in_order() -> None:
    async with mock_upstream() as up, proxy(resumable(up)) as client:
        first, head = await read_some(client, "POST", "/chat", 2, json=chat_body())
        sid = first.headers["x-stream-id"]
        readers = await asyncio.gather(*[read_stream(client, "GET", f"/streams/{sid}") for _ in range(3)])
    bodies = [[(e.id, e.data) for e in parsed.events] for _, parsed in readers]
    assert bodies[0] == bodies[1] == bodies[2]
    assert text_of(readers[0][1].events) == DEFAULT_REPLY
    assert bodies[0][:2] == [(e.id, e.data) for e in head]


async def test_stop_cancels_the_upstream_at_once_and_ends_every_reader() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=100")) as client:
        first, _ = await read_some(client, "POST", "/chat", 2, json=chat_body())
        sid = first.headers["x-stream-id"]
        reader = asyncio.create_task(read_stream(client, "GET", f"/streams/{sid}"))
        await asyncio.sleep(0.2)
        stopped = await client.post(f"/streams/{sid}/stop")
        await up.recorder.wait_closed(0, timeout=HANG)
        _, parsed = await asyncio.wait_for(reader, HANG)
        again = await client.post(f"/streams/{sid}/stop")
    assert stopped.status_code == 202 and stopped.json() == {"state": "stopping"}
    last = assert_one_terminate_last(payloads(parsed))
    assert (last["reason"], last["code"]) == ("cancelled", "stopped")
    assert not up.recorder.attempts[0].finished
    assert again.status_code == 200 and again.json() == {"state": "finished", "reason": "cancelled"}


async def test_a_reader_back_within_grace_gets_the_rest_and_the_upstream_goes_on() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=60", grace=1.5)) as client:
        first, before = await read_some(client, "POST", "/chat", 3, json=chat_body())
        sid = first.headers["x-stream-id"]
        await asyncio.sleep(0.5)  # nobody reads: well within grace
        _, after = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": before[-1].id})
    assert up.recorder.attempts[0].finished and up.recorder.count() == 1
    assert text_of(before + after.events) == DEFAULT_REPLY


async def test_an_abandoned_stream_is_cancelled_after_grace_and_says_so() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=100", grace=0.3)) as client:
        first, before = await read_some(client, "POST", "/chat", 2, json=chat_body())
        sid = first.headers["x-stream-id"]
        await up.recorder.wait_closed(0, timeout=HANG)  # grace + 1 s at most; no timing asserted
        _, after = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": before[-1].id})
    last = assert_one_terminate_last(payloads(after))
    assert (last["reason"], last["code"]) == ("cancelled", "abandoned")
    assert not up.recorder.attempts[0].finished


async def test_with_resume_off_a_reconnect_gets_204_and_events_are_numbered() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=0", enabled=False)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        reconnect = await client.get("/stream", headers={"last-event-id": "3"})
        routes = await client.get("/streams/" + "A" * 22)
    assert "x-stream-id" not in response.headers
    assert [e.id for e in parsed.events] == [str(i) for i in range(1, len(parsed.events) + 1)]
    assert reconnect.status_code == 204 and routes.status_code == 404


async def test_an_expired_stream_is_204_after_retention() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=0", retention=0.2)) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        sid, middle = response.headers["x-stream-id"], parsed.events[2].id
        async with asyncio.timeout(HANG):
            while (late := await client.get(f"/streams/{sid}", headers={"last-event-id": middle})).status_code != 204:
                await asyncio.sleep(0.05)
        again = await client.get("/stream", headers={"last-event-id": middle})
        assert up.recorder.count() == 1
    assert late.status_code == 204 and again.status_code == 204


async def test_a_probe_with_head_starts_nothing() -> None:
    async with mock_upstream() as up, proxy(resumable(up)) as client:
        first, _ = await read_some(client, "POST", "/chat", 1, json=chat_body())
        head = await client.head(f"/streams/{first.headers['x-stream-id']}")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream")


async def test_a_cursor_past_the_last_event_of_a_running_stream_gets_a_resume_gap_terminate() -> None:
    async with mock_upstream() as up, proxy(resumable(up, "delay_ms=100")) as client:
        first, _ = await read_some(client, "POST", "/chat", 1, json=chat_body())
        sid = first.headers["x-stream-id"]
        ahead, gap = await read_stream(client, "GET", f"/streams/{sid}", headers={"last-event-id": f"{sid}:500"})
    assert ahead.status_code == 200
    assert [json.loads(e.data)["error"]["type"] for e in gap.events] == ["resume_gap"]
    assert gap.events[0].id == f"{sid}:500"  # the preamble's: the terminate sets no id of its own


async def test_a_new_stream_the_store_refuses_is_counted_in_metrics() -> None:
    # A running stream holds more than the whole memory budget: the next stream cannot be kept.
    fault = "big_after=1+big_bytes=4000+delay_ms=100"
    async with mock_upstream() as up, proxy(resumable(up, fault, memory_budget=1024)) as client:
        await read_some(client, "POST", "/chat", 3, json=chat_body())
        refused = await client.post("/chat", json=chat_body())
        metrics = (await client.get("/metrics")).text
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "store_unavailable"
    assert 'llm_proxy_resume_store_failures_total{reason="refused"} 1.0' in metrics
