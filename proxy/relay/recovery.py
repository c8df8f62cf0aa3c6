"""Mid-stream recovery (issue 12): one whole answer when the upstream dies after text has gone out.

After the commit point, a cut, a stall or an in-band 5xx is recovered on the next attempt of the
usual order (the same model's remaining retries, then its fallbacks), within `timeouts.total`, when
the failing model's `recovery` asks for it and `faults.max_recoveries` is not spent:
- continue: a target with `continue_with` gets the original messages and an assistant message holding
  the text sent (its trailing whitespace stripped); only what follows is relayed, through `splice`.
  Never after a named event (a tool call, reasoning): the model would have to redo it.
- restart: only for a client that asked for the `reset` event. The client gets `event: reset`, then
  the answer from its start.
A target that refuses the prefill (any 4xx: the original request was accepted, so the prefill is
what it refuses) is not asked to continue again; a client that opted in gets a restart instead. If
recovery fails, the terminate reports the original failure, never what a recovery attempt said.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from llm_sse_proxy.proxy.deltas import ChatRequest, Message, Usage
from llm_sse_proxy.proxy.errors import UpstreamError, UpstreamTimeout, UpstreamTruncated, UpstreamUnavailable
from llm_sse_proxy.proxy.relay.splice import prefill

RECOVERABLE = (UpstreamTruncated, UpstreamTimeout, UpstreamUnavailable)
Kind = Literal["continue", "restart"]


class CannotRecoverHere(UpstreamError):
    """This target can neither continue the answer nor restart it: the chain moves on."""

    type = "recovery_unavailable"


class Target(Protocol):
    """What recovery needs to know of a model: its name, its own `recovery`, how it continues."""

    @property
    def name(self) -> str: ...
    @property
    def recovery(self) -> str: ...
    @property
    def continue_with(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """How the next attempt asks: a continuation of the text sent, or the original request again."""

    kind: Kind
    request: ChatRequest


class Recovery:
    """One request's recovery state: the text sent, the failure being recovered, and what was done."""

    def __init__(self, request: ChatRequest, *, may_reset: bool, budget: int) -> None:
        self.request = request
        self.may_reset = may_reset  # the client asked for the `reset` event
        self.budget = budget
        self.sent: list[str] = []  # the text relayed, appended by the relay while it records
        self.only_text = True  # no named event went out, and no tool call was under way
        self.original: UpstreamError | None = None  # the failure being recovered from
        self.recovered: dict[str, Any] | None = None  # the terminate's `recovered`
        self._mode = "off"
        self._count = 0
        self._after_chars = 0
        self._refused: set[str] = set()

    @property
    def active(self) -> bool:
        return self.original is not None

    def begin(self, exc: BaseException, failed: Target, *, time_left: bool) -> bool:
        """A committed stream failed with `exc`: True when the next attempt is to recover it."""
        if self.original is not None:
            return True  # a recovery attempt failed before it sent anything: the same recovery goes on
        mode = failed.recovery
        if mode == "off" or (mode == "restart" or not self.only_text) and not self.may_reset:
            return False
        if not isinstance(exc, RECOVERABLE) or self._count >= self.budget or not time_left:
            return False
        self.original, self._mode, self._count = exc, mode, self._count + 1
        self._after_chars = len(self.text())
        return True

    def plan(self, target: Target) -> Plan:
        """How `target` is asked; CannotRecoverHere when it can do neither."""
        if self._mode == "continue" and self.only_text and self.can_continue(target):
            return Plan("continue", self._continuation(target.continue_with))
        if self.may_reset:
            return Plan("restart", self.request)
        raise CannotRecoverHere(f"{target.name} cannot continue an answer")

    def can_continue(self, target: Target) -> bool:
        return target.continue_with != "none" and target.name not in self._refused

    def refused(self, target: Target) -> None:
        """`target` answered a continuation with a 4xx: it is not asked to continue again."""
        self._refused.add(target.name)

    def done(self, kind: Kind, model: str) -> None:
        """The recovery attempt sent its first event: the recovery succeeded."""
        self.recovered = {"kind": kind, "after_chars": self._after_chars, "model": model}
        self.original = None
        if kind == "restart":
            self.sent.clear()  # the client discarded it
            self.only_text = True

    def text(self) -> str:
        """The text sent so far (joined once, kept joined)."""
        joined = "".join(self.sent)
        self.sent[:] = [joined] if joined else []
        return joined

    def _continuation(self, spelling: str) -> ChatRequest:
        text = prefill(self.text())
        if not text:
            return self.request  # only whitespace went out: the answer from its start, spliced
        messages = (*self.request.messages, Message("assistant", text))
        return replace(self.request, messages=messages, continue_with=spelling)  # type: ignore[arg-type]


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    """The sum of two attempts' usage (each attempt's tokens are billed); None when neither is known."""
    if total is None or more is None:
        return more if total is None else total
    return Usage(
        total.prompt_tokens + more.prompt_tokens,
        total.completion_tokens + more.completion_tokens,
        _sum(total.reasoning_tokens, more.reasoning_tokens),
        _sum(total.cached_tokens, more.cached_tokens),
    )


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)
