"""What the relay tells an observer about one stream: each upstream attempt, and each retry, fallback,
recovery and hedge as it happens (issue 25). The relay knows no tracing library: proxy/telemetry/
tracing.py implements this to make spans, and `NO_OBSERVER` costs a method call per attempt.

Nothing here is called per chunk: only at the points where a stream changes course.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

_NOTHING = nullcontext()  # stateless: one instance serves every attempt


class RelayObserver(Protocol):
    def attempt(self, model: str) -> AbstractContextManager[object]:
        """Around one upstream attempt of `model`; its exit sees the attempt's error, if any."""
        ...

    def retrying(self, error_type: str, wait: float) -> None:
        """An attempt failed with `error_type`; the same model is asked again after `wait` seconds."""
        ...

    def falling_back(self, model: str) -> None:
        """The models before `model` in the chain failed: it is asked next."""
        ...

    def recovering(self, error_type: str) -> None:
        """A committed stream failed with `error_type`; the next attempt is to recover the answer."""
        ...

    def recovered(self, kind: str, model: str) -> None:
        """The recovery attempt of `model` sent its first event (`kind`: continue or restart)."""
        ...

    def hedge_started(self, model: str) -> None:
        """A hedged attempt of `model` starts beside a silent one (timeouts.hedge_after)."""
        ...

    def hedge_won(self, model: str) -> None:
        """The hedged race is decided: `model`'s attempt answered first, the other is cancelled."""
        ...


class NoObserver:
    """The observer when tracing is off."""

    __slots__ = ()

    def attempt(self, model: str) -> AbstractContextManager[object]:
        return _NOTHING

    def retrying(self, error_type: str, wait: float) -> None:
        pass

    def falling_back(self, model: str) -> None:
        pass

    def recovering(self, error_type: str) -> None:
        pass

    def recovered(self, kind: str, model: str) -> None:
        pass

    def hedge_started(self, model: str) -> None:
        pass

    def hedge_won(self, model: str) -> None:
        pass


NO_OBSERVER = NoObserver()
