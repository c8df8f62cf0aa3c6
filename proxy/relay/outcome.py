"""How a stream ended: what the relay records and the access log, the metrics and the OpenAI door read."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_sse_proxy.proxy.deltas import Usage


@dataclass(slots=True)
class Outcome:
    """How a stream ended, for the access log and metrics."""

    reason: str = "cancelled"
    model: str | None = None
    deployment: str | None = None  # the label of the model's deployment that answered (issue 22)
    usage: Usage | None = None
    error_type: str | None = None
    error_status: int | None = None  # the upstream's HTTP status behind the error, if any
    attempts: int = 0
    fallbacks: int = 0
    ttft: float | None = None
    chunks: int = 0
    retries: list[str] = field(default_factory=list)  # the error types that were retried
    failures: list[str] = field(default_factory=list)  # the error types that ended a model's turn
    recovered: str | None = None  # the kind of mid-stream recovery, when one succeeded
    hedged: bool = False  # a hedge was started beside a silent first attempt (timeouts.hedge_after)
    malformed: int = 0  # malformed upstream chunks (skipped, but for one that ended the stream)
    # For the bill of a stream whose usage never came (issue 23, proxy/admission/budgets.py):
    text_chars: int = 0  # answer text relayed, every attempt
    unmetered: list[int] = field(default_factory=list)  # the text of each failed attempt that said no usage
    spent: Usage | None = None  # what failed attempts said they used
    # Resumable streams (proxy/resume/audience.py): how the client left before the end ("closed",
    # "send_timeout"), and what came of the grace that followed ("resumed", "cancelled_at_grace",
    # "finished_unread"). Without resume the reason alone says it (cancelled, send_timeout).
    resumable: bool = False
    disconnect: str | None = None
    grace: str | None = None

    def left_early(self) -> str | None:
        """How the client left before the end, if it did: "closed" or "send_timeout"."""
        if self.resumable:
            return self.disconnect
        return {"cancelled": "closed", "send_timeout": "send_timeout"}.get(self.reason)
