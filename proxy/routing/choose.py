"""Which deployment a request goes to: the four strategies as pure functions of a snapshot.

The snapshot holds only the deployments that may be asked now (breaker not open, quota not spent, not
already tried by this request). Randomness comes in as two numbers in [0, 1), so a table can test it.
The Redis state runs the same rules in Lua (proxy/state/routing_scripts.py), next to the counters.

- weighted: at random, in proportion to `weight`.
- least_busy: the fewest streams in flight; a tie is broken by weight, at random.
- latency: power of two choices (Mitzenmacher; Finagle's and Linkerd's PeakEWMA): two deployments drawn
  by weight, and the one with the lower `latency x (in flight + 1)` wins. A deployment never measured
  counts as 0 and is tried first. The estimate fades with time since it was last measured
  (LATENCY_HALF_LIFE), so a deployment that lost all its traffic is probed again now and then.
- ordered: the first, in the order written (a model's own fallbacks come after all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LATENCY_HALF_LIFE = 30.0  # seconds without a measurement that halve a deployment's latency estimate
LATENCY_ALPHA = 0.3  # the weight of a new measurement below the estimate; one above replaces it (a peak)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment that may be asked now, as the state sees it."""

    weight: float
    in_flight: int = 0
    latency: float | None = None  # seconds to first token, as estimated now; None: never measured


def choose(strategy: str, candidates: Sequence[Candidate], rand: tuple[float, float]) -> int:
    """The index in `candidates` (not empty) that `strategy` picks."""
    if len(candidates) == 1 or strategy == "ordered":
        return 0
    if strategy == "least_busy":
        fewest = min(c.in_flight for c in candidates)
        tied = [i for i, c in enumerate(candidates) if c.in_flight == fewest]
        return tied[_by_weight([candidates[i] for i in tied], rand[0])]
    if strategy == "latency":
        return _two_choices(candidates, rand)
    return _by_weight(candidates, rand[0])


def _by_weight(candidates: Sequence[Candidate], r: float) -> int:
    point = r * sum(c.weight for c in candidates)
    for i, candidate in enumerate(candidates):
        point -= candidate.weight
        if point < 0:
            return i
    return len(candidates) - 1  # r * total rounded up to the total


def _two_choices(candidates: Sequence[Candidate], rand: tuple[float, float]) -> int:
    first = _by_weight(candidates, rand[0])
    rest = [i for i in range(len(candidates)) if i != first]
    second = rest[_by_weight([candidates[i] for i in rest], rand[1])]
    return second if _cost(candidates[second]) < _cost(candidates[first]) else first


def _cost(candidate: Candidate) -> float:
    return (candidate.latency or 0.0) * (candidate.in_flight + 1)


def faded(estimate: float | None, age: float) -> float | None:
    """A latency estimate `age` seconds after its last measurement."""
    return None if estimate is None else estimate * 0.5 ** (max(0.0, age) / LATENCY_HALF_LIFE)


def measured(estimate: float | None, age: float, sample: float) -> float:
    """The estimate after a new time to first token: a peak is taken at once, a drop by LATENCY_ALPHA."""
    now = faded(estimate, age)
    if now is None or sample >= now:
        return sample
    return now + LATENCY_ALPHA * (sample - now)
