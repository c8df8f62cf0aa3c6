"""A bounded soak of mid-stream recovery: 100 streams, each cut or stalled at a random point of its answer
(seeded), recovered by a continuation in a random spelling, some with an echo at the seam. Every stream
must end `stop` with exactly the canonical answer: nothing duplicated at a seam, nothing missing."""

from __future__ import annotations

import random

import anyio
import pytest

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY
from tests.conftest import LOAD_TEST_LIMITS, proxy
from tests.test_recovery import CHUNKS, converse
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

STREAMS, AT_ONCE = 100, 10
FAULTS = ("drop_after", "close_after", "stall_after", "error_after")
SPELLINGS = ("trailing_assistant", "prefix_flag", "continue_final_message")


def soak_models(up, seed: int = 12) -> list[dict]:
    rng = random.Random(seed)
    models = []
    for i in range(STREAMS):
        fault, cut, spelling = rng.choice(FAULTS), rng.randrange(1, len(CHUNKS)), rng.choice(SPELLINGS)
        echo = rng.choice((0, 0, 8, 13, 21))  # echoes the seam promises to find (tests/test_splice.py)
        faults = f"{fault}={cut}+fault_attempts=1+continue_with={spelling}+echo_chars={echo}+delay_ms={rng.randrange(3)}"
        models.append(up.model(f"m{i}", f"m{i}+{faults}", recovery="continue", continue_with=spelling))
    return models


async def test_every_recovered_stream_is_the_canonical_answer() -> None:
    # idle 1 s, not 0.3: late in the full suite a collection of the test process's heap can pause the loop
    # for about 0.3 s, which a healthy continuation took for a stall (one more attempt: 202 requests, not 200).
    timeouts = {"connect": 2, "first_token": 5, "idle": 1.0, "total": 30}
    results: dict[int, tuple[str, dict]] = {}
    async with mock_upstream() as up:
        config = upstream_config(soak_models(up), timeouts=timeouts, limits=LOAD_TEST_LIMITS)
        async with proxy(config) as client:
            limiter = anyio.CapacityLimiter(AT_ONCE)

            async def one(i: int) -> None:
                async with limiter:
                    text, terminate, _, _ = await converse(client, model=f"m{i}")
                    results[i] = (text, terminate)

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tasks:
                    for i in range(STREAMS):
                        tasks.start_soon(one, i)
    wrong = {i: r for i, r in results.items() if r[0] != DEFAULT_REPLY or r[1]["reason"] != "stop"}
    assert len(results) == STREAMS and not wrong, wrong
    assert all(t["recovered"]["kind"] == "continue" for _, t in results.values())
    assert up.recorder.count() == 2 * STREAMS
