"""Who reads a resumable stream in this process, and what a client's leaving came to (issue 26 item 10).

With resume on, a client that leaves does not cancel the upstream: the generation goes on for up to
`resume.grace` seconds, waiting for it to come back. The access line and the metrics still say so: the
first reader that left before the end marks the stream `client_disconnect` ("closed", or "send_timeout"
for one that stopped reading), and at its end the stream says what came of the grace:
- `resumed`: a reader was back (and reading) when the answer ended;
- `cancelled_at_grace`: nobody came back within `grace`; the upstream was cancelled then;
- `finished_unread`: the answer ended while nobody read it (billed in full; still replayable for
  `retention`). A stop request or a shutdown while nobody reads leaves it null.
Readers on other replicas (Redis store) are not seen here: a client that came back to another replica
counts as `finished_unread` on the generating one.
"""

from __future__ import annotations

from llm_sse_proxy.proxy.doors.response import OnDone
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.state.streams.store import StopCause

LEFT = {"cancelled": "closed", "send_timeout": "send_timeout"}  # a reader's ending -> how its client left


class Audience:
    """The readers of one generation in this process; it writes its findings into the stream's outcome."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        outcome.resumable = True
        self.present = 0
        self.cause: StopCause | None = None
        self.ended = False

    def attach(self) -> OnDone:
        """A reader comes; call the result with its response's ending when it goes."""
        self.present += 1
        gone = False

        def leave(ending: str | None) -> None:
            nonlocal gone
            if gone:
                return
            gone = True
            self.present -= 1
            left = LEFT.get(ending or "")
            if left is not None and not self.ended and self.outcome.disconnect is None:
                self.outcome.disconnect = left

        return leave

    def stopped(self, cause: StopCause) -> None:
        """Why the store told the generation to stop: "abandoned" (grace ran out) or "stopped" (asked)."""
        self.cause = cause

    def settle(self, ending: str | None) -> None:
        """The generation ended (`ending` None: its producer finished it): say what came of the grace."""
        self.ended = True
        if self.outcome.disconnect is None:
            return
        if self.cause == "abandoned":
            self.outcome.grace = "cancelled_at_grace"
        elif self.present > 0:
            self.outcome.grace = "resumed"
        elif ending is None:
            self.outcome.grace = "finished_unread"
