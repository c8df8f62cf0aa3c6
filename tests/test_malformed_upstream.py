"""Malformed upstream data: one bad chunk is skipped (counted); with `on_malformed_chunk: error`, or when they
keep coming, the stream ends with an error terminate and loses none of the text before it."""

from __future__ import annotations

import pytest

from llm_sse_proxy.adapters.event_stream import EventStreamDecoder
from llm_sse_proxy.proxy.errors import UpstreamMalformed
from tests.conftest import LOAD_TEST_LIMITS, proxy
from tests.test_upstream_openai import ask
from tests.upstream_fixtures import DIALECTS, mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

FIRST_THREE = "Hello! This is "  # the mock upstream's first three chunks of five characters


WHOLE = "Hello! This is the mock upstream, streaming a short canned reply one small chunk at a time."
ON_ERROR = {"on_malformed_chunk": "error"}


SKIPPED = [(d, f) for d in DIALECTS for f in ("malformed_after=3", "malformed_after=0")] + [("openai", "fieldless_after=3")]


@pytest.mark.parametrize(("dialect", "fault"), SKIPPED)
async def test_one_malformed_chunk_is_skipped_and_counted(fault: str, dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+{fault}", dialect)])) as client:
        text, terminate = await ask(client)
        metrics = (await client.get("/metrics")).text
    assert text == WHOLE and terminate["reason"] == "stop"
    assert up.recorder.count() == 1
    assert 'llm_proxy_malformed_chunks_total{model="gpt"} 1.0' in metrics


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_malformed_chunks_that_keep_coming_end_the_stream(dialect: str) -> None:
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+malformed_after=3+malformed_times=3", dialect)])
        async with proxy(config) as client:
            text, terminate = await ask(client)
    assert text == FIRST_THREE
    assert terminate["reason"] == "error" and terminate["error"]["type"] == "malformed_upstream_data"


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ("malformed_after=3", "malformed_upstream_data"),  # a chunk that is not JSON
        ("fieldless_after=3", "malformed_upstream_data"),  # a JSON chunk without choices
        ("error_after=3", "upstream_unavailable"),  # an error object mid-stream
        ("big_after=3", "malformed_upstream_data"),  # one 8 MiB chunk, over the 1 MiB default line bound
    ],
)
async def test_bad_chunk_ends_with_an_error_after_the_text_so_far(fault: str, error_type: str) -> None:
    await bad_chunk_ends_with_an_error(fault, error_type, "openai")


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d != "openai"])
@pytest.mark.parametrize(("fault", "error_type"), [("malformed_after=3", "malformed_upstream_data"),
                                                   ("error_after=3", "upstream_unavailable")])
async def test_a_bad_chunk_in_any_dialect_ends_with_an_error(fault: str, error_type: str, dialect: str) -> None:
    await bad_chunk_ends_with_an_error(fault, error_type, dialect)


async def bad_chunk_ends_with_an_error(fault: str, error_type: str, dialect: str) -> None:
    async with mock_upstream() as up, proxy(upstream_config([up.model("gpt", f"gpt+{fault}", dialect)],
                                                            faults=ON_ERROR)) as client:
        text, terminate = await ask(client)
        await up.recorder.wait_closed(0, timeout=5)
    assert text == FIRST_THREE
    assert terminate["reason"] == "error" and terminate["error"]["type"] == error_type
    assert up.recorder.count() == 1


@pytest.mark.parametrize(("fault", "said"), [
    ("endless_after", "longer than"),  # one line that never ends
    ("unended_after", "bigger than"),  # short data: lines, and never the blank line that ends the event
])
async def test_an_event_that_never_ends_ends_with_an_error_and_closes_the_upstream(fault: str, said: str) -> None:
    async with mock_upstream() as up:
        model = up.model("gpt", f"gpt+{fault}=3", max_event_bytes=256 * 1024)
        async with proxy(upstream_config([model])) as client:
            text, terminate = await ask(client)
            await up.recorder.wait_closed(0, timeout=5)
    assert text == FIRST_THREE
    assert terminate["error"]["type"] == "malformed_upstream_data" and said in terminate["error"]["message"]
    assert not up.recorder.attempts[0].finished


async def test_an_8_mib_chunk_is_relayed_whole_when_the_bound_allows_it() -> None:
    limits = {**LOAD_TEST_LIMITS}
    async with mock_upstream() as up:
        model = up.model("gpt", "gpt+big_after=3", max_event_bytes=16 << 20)
        async with proxy(upstream_config([model], limits=limits)) as client:
            text, terminate = await ask(client)
    assert terminate["reason"] == "stop"
    assert text.startswith(FIRST_THREE + "x" * (8 << 20) + "the mock")
    assert len(text) == (8 << 20) + len("Hello! This is the mock upstream, streaming a short canned reply one small "
                                        "chunk at a time.")


def test_the_decoder_bounds_an_unfinished_line_but_not_many_short_events() -> None:
    decoder = EventStreamDecoder(max_event=1000)
    for _ in range(100):
        assert decoder.feed(b"data: " + b"y" * 500 + b"\n\n") == [("message", "y" * 500)]
    decoder.feed(b"data: " + b"z" * 900)
    with pytest.raises(UpstreamMalformed):
        decoder.feed(b"z" * 200)


def test_the_decoder_bounds_one_event_made_of_many_short_lines() -> None:
    decoder = EventStreamDecoder(max_event=1000)
    assert decoder.feed(b"data: x\n" * 400 + b"\n") == [("message", "\n".join("x" * 400))]  # 800 bytes: fits
    decoder.feed(b"data: x\n" * 499)
    with pytest.raises(UpstreamMalformed, match="bigger than 1000"):
        decoder.feed(b"data: x\n" * 2)

