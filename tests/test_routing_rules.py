"""The routing's rules as tables (issue 22): the strategies on a snapshot, the breaker's states on a fake
clock, and the in-memory state (quotas, in-flight, probes) that applies them."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from llm_sse_proxy.proxy.config import BreakerConfig
from llm_sse_proxy.proxy.routing.breaker import BreakerState
from llm_sse_proxy.proxy.routing.choose import LATENCY_HALF_LIFE, Candidate, choose, faded, measured
from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute
from llm_sse_proxy.proxy.state.routing import QUOTA_WINDOW, MemoryRouting, Taken, Wanted

A, B, C = Candidate(1), Candidate(1), Candidate(2)


@pytest.mark.parametrize(("strategy", "candidates", "rand", "expected"), [
    ("weighted", [A, B, C], (0.0, 0.0), 0),
    ("weighted", [A, B, C], (0.26, 0.0), 1),  # 1 of 4 is A's
    ("weighted", [A, B, C], (0.5, 0.0), 2),
    ("weighted", [A, B, C], (0.999, 0.0), 2),
    ("ordered", [A, B, C], (0.9, 0.9), 0),
    ("least_busy", [Candidate(1, 3), Candidate(1, 1), Candidate(1, 2)], (0.9, 0.0), 1),
    ("least_busy", [Candidate(1, 1), Candidate(1, 3), Candidate(3, 1)], (0.5, 0.0), 2),  # a tie, by weight
    ("latency", [Candidate(1, 0, 2.0), Candidate(1, 0, 0.5)], (0.0, 0.0), 1),  # the lower estimate wins the pair
    ("latency", [Candidate(1, 9, 0.5), Candidate(1, 0, 2.0)], (0.0, 0.0), 1),  # 0.5 x 10 in flight > 2.0 x 1
    ("latency", [Candidate(1, 0, 0.5), Candidate(1, 0, None)], (0.0, 0.0), 1),  # never measured: tried first
    ("latency", [Candidate(1, 0, 0.1), Candidate(1, 0, 0.2), Candidate(1, 0, 9.0)], (0.9, 0.9), 1),  # drawn: 2 and 1
    ("weighted", [A], (0.9, 0.9), 0),
])
def test_each_strategy_picks(strategy: str, candidates: list[Candidate], rand: tuple[float, float], expected: int) -> None:
    assert choose(strategy, candidates, rand) == expected


def test_weights_share_the_draws_in_proportion() -> None:
    picks = Counter(choose("weighted", [A, B, C], (i / 1000, 0.0)) for i in range(1000))
    assert picks == {0: 250, 1: 250, 2: 500}


@pytest.mark.parametrize(("estimate", "age", "sample", "expected"), [
    (None, 0, 0.4, 0.4),  # the first measurement is the estimate
    (0.2, 0, 0.8, 0.8),  # a peak is taken at once
    (1.0, 0, 0.0, 0.7),  # a drop moves it by 0.3 of the way
    (1.0, LATENCY_HALF_LIFE, 0.5, 0.5),  # faded to 0.5 first
])
def test_the_latency_estimate(estimate, age, sample, expected) -> None:
    assert math.isclose(measured(estimate, age, sample), expected)
    assert faded(None, 5) is None and math.isclose(faded(2.0, 2 * LATENCY_HALF_LIFE), 0.5)


def test_the_breaker_opens_half_opens_and_closes() -> None:
    state, rules = BreakerState(), {"failures": 3, "window": 10, "open_for": 30}
    state.failed(100, **rules)
    state.failed(105, **rules)
    assert state.wait(105) == 0 and not state.clean
    state.failed(116, **rules)  # the window began at 100: this one starts a new count
    state.failed(117, **rules)
    assert state.wait(117) == 0
    state.failed(118, **rules)  # three within 10 s of 116
    assert state.wait(118) == 30 and not state.half_open(147)
    assert state.half_open(148) and state.wait(148) == 0
    state.take_probe(148, lease=60)
    assert state.wait(149) == 59  # one probe at a time
    state.failed(150, **rules)  # the probe failed: open again
    assert state.wait(150) == 30
    state.take_probe(180)
    state.succeeded()
    assert state.clean and state.wait(180) == 0


def test_a_retry_after_holds_it_off_and_failures_zero_never_open_it() -> None:
    state = BreakerState()
    for _ in range(10):
        state.failed(0, failures=0, window=10, open_for=30)
    assert state.wait(0) == 0
    state.hold(12)
    state.hold(5)  # a shorter hold does not cut a longer one
    assert state.wait(0) == 12 and state.half_open(12)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def model(*deployments: Deployment, strategy: str = "weighted", failures: int = 2) -> ModelRoute:
    return ModelRoute("m", deployments, strategy, BreakerConfig(failures=failures, window=10, open_for=30))


def deployment(label: str, **quota: int) -> Deployment:
    return Deployment(f"m/{label}", label, None, **quota)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_rpm_is_never_passed_within_a_minute() -> None:
    clock, east = Clock(), deployment("east", rpm=3)
    state, chain = MemoryRouting(clock), [model(east)]
    taken = [await state.take(Wanted(chain, range(1))) for _ in range(4)]
    assert [isinstance(t, Taken) for t in taken] == [True, True, True, False]
    assert taken[3] == QUOTA_WINDOW  # seconds until the oldest request leaves the window
    clock.now += QUOTA_WINDOW
    assert isinstance(await state.take(Wanted(chain, range(1))), Taken)


@pytest.mark.anyio
async def test_tpm_counts_the_tokens_released() -> None:
    clock, east, west = Clock(), deployment("east", tpm=100), deployment("west")
    state, chain = MemoryRouting(clock, rand=lambda: 0.0), [model(east, west, strategy="ordered")]
    first = await state.take(Wanted(chain, range(1)))
    assert isinstance(first, Taken) and first.index == 0
    state.release(east, first, 100)
    second = await state.take(Wanted(chain, range(1)))
    assert isinstance(second, Taken) and second.index == 1  # east's minute is spent: west answers


@pytest.mark.anyio
async def test_a_model_whose_deployments_are_open_passes_to_the_next_and_a_probe_is_single() -> None:
    clock, east, backup = Clock(), deployment("east"), Deployment("b/0", "0", None)  # type: ignore[arg-type]
    state = MemoryRouting(clock)
    chain = [model(east), ModelRoute("b", (backup,))]
    first = await state.take(Wanted(chain, range(2)))
    assert isinstance(first, Taken)
    state.failed(east, first, chain[0], None)
    state.failed(east, first, chain[0], None)  # two failures: open
    state.release(east, first, 0)
    moved = await state.take(Wanted(chain, range(2)))
    assert isinstance(moved, Taken) and moved.position == 1
    assert await state.take(Wanted(chain, range(1))) == 30  # only the open model: the wait
    clock.now += 30
    probe = await state.take(Wanted(chain, range(1)))
    assert isinstance(probe, Taken) and probe.probe and probe.report
    assert isinstance(await state.take(Wanted(chain, range(1))), float)  # one probe at a time
    state.first_token(east, probe, 0.1)
    assert isinstance(await state.take(Wanted(chain, range(1))), Taken)  # closed


@pytest.mark.anyio
async def test_least_busy_counts_the_streams_in_flight_and_tried_ones_come_last() -> None:
    east, west = deployment("east"), deployment("west")
    state, chain = MemoryRouting(Clock()), [model(east, west, strategy="least_busy")]
    first = await state.take(Wanted(chain, range(1)))
    second = await state.take(Wanted(chain, range(1)))
    assert {first.index, second.index} == {0, 1}  # type: ignore[union-attr]
    state.release(west, second if second.index == 1 else first, 0)  # type: ignore[arg-type,union-attr]
    third = await state.take(Wanted(chain, range(1), avoid=frozenset({"m/west"})))
    assert third.index == 0  # type: ignore[union-attr]  # west is idle, but this request tried it
    assert (await state.take(Wanted(chain, range(1), exclude=frozenset({"m/east"})))).index == 1  # type: ignore[union-attr]
