"""What every door does with a chat alike: admit the client, read the body, and build the relay.

A door parses its own body into a `ParsedChat`, then asks `begin` for the relay and the options of its
streaming response: the model chain is checked, the client's stream slot is taken, and when the stream
ends the slot is freed, the metrics are counted and the access line is written, whatever the door.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.proxy.admission.admit import Admission
from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.admission.budgets import Reservation
from llm_sse_proxy.proxy.admission.limits import check_size
from llm_sse_proxy.proxy.config import Config, ModelConfig
from llm_sse_proxy.proxy.deltas import Sleep
from llm_sse_proxy.proxy.doors.http import is_json, read_body, request_id
from llm_sse_proxy.proxy.doors.response import OnDone, Shutdown
from llm_sse_proxy.proxy.doors.validation import ParsedChat, check_supported
from llm_sse_proxy.proxy.errors import BudgetExceeded, NotFound, UnsupportedMediaType
from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.relay.observer import NO_OBSERVER
from llm_sse_proxy.proxy.relay.relay import Relay
from llm_sse_proxy.proxy.telemetry import access_log
from llm_sse_proxy.proxy.telemetry.metrics import Metrics
from llm_sse_proxy.proxy.telemetry.tracing import Traced, Tracing

log = logging.getLogger("llm_sse_proxy")


@dataclass
class Chats:
    config: Config
    admission: Admission
    metrics: Metrics
    sleep: Sleep
    shutdown: Shutdown | None

    async def read_chat(self, request: Request) -> tuple[Client, bytes]:
        """Admit the client, then read its JSON body (bounded)."""
        client = await self.admission.admit(request)
        if not is_json(request.headers.get("content-type", "")):
            raise UnsupportedMediaType("send the chat as JSON with content-type: application/json")
        return client, await read_body(request, self.config.server.max_body_bytes)

    async def begin(self, request: Request, client: Client, parsed: ParsedChat) -> tuple[Relay, dict[str, Any]]:
        """The relay for a chat, and its response's options; the client's stream slot is taken and its
        budget charged (issue 23: `max_tokens` capped to what is left)."""
        name = parsed.model or self.config.default_model
        chain = self._chain(request, name, parsed)
        rid = request_id(request)
        prompt = _last_user_message(parsed) if self.config.logging.log_prompts else None
        route = await request.app.state.runtime.routes.open(chain)
        try:
            leave, asked, reservation = await self._admit(client, parsed, name)
        except BaseException:
            route.close()  # the deployment taken for the first attempt is given back
            raise
        # Last: nothing below can fail and leak the slot, the reservation or the deployment.
        tracing: Tracing | None = request.app.state.runtime.tracing
        trace = tracing.stream(request, model=name, chat=asked, client=client.identity,
                               request_id=rid) if tracing is not None else None
        relay = Relay(route, asked, retry=self.config.retry, timeouts=self.config.timeouts, sleep=self.sleep,
                      events=parsed.events, faults=self.config.faults, observer=trace or NO_OBSERVER,
                      record_text=trace is not None and tracing is not None and tracing.capture_content)
        self.metrics.stream_started()
        options = {"ping_interval": self.config.server.ping_interval, "send_timeout": self.config.server.send_timeout,
                   "shutdown": self.shutdown, "headers": {"x-request-id": rid}}
        ending = Ending(leave, client, reservation, self.admission.budgets.prompt_of(asked))
        options["on_done"] = self._on_done(relay, ending, rid, name, prompt, trace)
        return relay, options

    async def _admit(self, client: Client, parsed: ParsedChat, name: str) -> tuple[Any, Any, Any]:
        """The client's stream slot, then its budget's reservation (`max_tokens` capped to what is left)."""
        leave = await self.admission.enter(client)
        try:
            asked, reservation = await self.admission.budgets.reserve(client, parsed.request, name)
        except BaseException as exc:
            leave()
            if isinstance(exc, BudgetExceeded):
                self.metrics.budgets.refusal(exc.budget, self.admission.budgets.tier_label(client))
            raise
        return leave, asked, reservation

    def _chain(self, request: Request, name: str, parsed: ParsedChat) -> list[str]:
        """The names of the model and its fallbacks, each able to answer the request (else 400 or 404)."""
        if name not in request.app.state.runtime.upstreams:
            raise NotFound(f"unknown model {name!r}", param="model", code="model_not_found")
        check_size(parsed.request, self.config.limits)
        models: list[ModelConfig] = [self.config.model(n) for n in [name, *self.config.model(name).fallbacks]]  # type: ignore[misc, union-attr]
        for model in models:  # a fallback (and each deployment) must answer the same request, or be refused up front
            for deployment in model.upstreams():
                check_supported(parsed.request, model.name, REGISTRY[deployment.adapter].takes)
        return [m.name for m in models]

    def _on_done(self, relay: Relay, ending: Ending, rid: str, name: str, prompt: str | None,
                 trace: Traced | None) -> OnDone:
        started = anyio.current_time()

        def done(reason: str | None) -> None:
            ending.leave()
            relay.route.close()  # a stream that never ran gives back its first deployment too
            outcome = relay.outcome
            if reason is not None:
                outcome.reason = reason
            duration = anyio.current_time() - started
            self.metrics.stream_ended(name, outcome, duration)
            bill = self._bill(ending, outcome)
            if trace is not None:
                trace.ended(outcome, relay.recovery.text() if relay.records_text else None)
            if self.config.logging.access_log:
                access_log.write(access_log.stream_line(
                    request_id=rid, client=ending.client.identity, model=name, outcome=outcome, duration=duration,
                    prompt=prompt, bill=bill))

        return done

    def _bill(self, ending: Ending, outcome: Outcome) -> dict[str, Any]:
        """Settle the stream's budget with what it used; the access line's part about it."""
        budgets = self.admission.budgets
        bill = budgets.bill(outcome, ending.prompt)
        if ending.reservation is not None:
            budgets.settle(ending.reservation, bill)
        tier = budgets.tier_label(ending.client)
        self.metrics.budgets.billed(outcome.model or "none", tier, bill.tokens, bill.cost, bill.estimated)
        return {"tier": ending.client.tier, "billed_tokens": bill.tokens, "estimated": bill.estimated,
                "cost": round(bill.cost, 9)}


@dataclass(frozen=True, slots=True)
class Ending:
    """What a stream's end gives back: its slot, its reservation (settled with the bill)."""

    leave: Callable[[], None]
    client: Client
    reservation: Reservation | None
    prompt: int  # the estimated tokens of its prompt, for a bill without usage


def _last_user_message(parsed: ParsedChat) -> str:
    users = [m.text for m in parsed.request.messages if m.role == "user"]
    return users[-1][:2000] if users else ""
