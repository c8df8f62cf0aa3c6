"""What every door does with a chat alike: admit the client, read the body, and build the relay.

A door parses its own body into a `ParsedChat`, then asks `begin` for the relay and the options of its
streaming response: the model chain is checked, the client's stream slot is taken, and when the stream
ends the slot is freed, the metrics are counted and the access line is written, whatever the door.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.proxy.admission.admit import Admission
from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.admission.limits import check_size
from llm_sse_proxy.proxy.config import Config, ModelConfig
from llm_sse_proxy.proxy.deltas import Sleep
from llm_sse_proxy.proxy.doors.http import is_json, read_body, request_id
from llm_sse_proxy.proxy.doors.response import OnDone, Shutdown
from llm_sse_proxy.proxy.doors.validation import ParsedChat, check_supported
from llm_sse_proxy.proxy.errors import NotFound, UnsupportedMediaType
from llm_sse_proxy.proxy.relay.observer import NO_OBSERVER
from llm_sse_proxy.proxy.relay.relay import Relay
from llm_sse_proxy.proxy.state.cooldowns import Cooldowns
from llm_sse_proxy.proxy.telemetry import access_log
from llm_sse_proxy.proxy.telemetry.metrics import Metrics
from llm_sse_proxy.proxy.telemetry.tracing import Traced, Tracing

log = logging.getLogger("llm_sse_proxy")


@dataclass
class Chats:
    config: Config
    admission: Admission
    metrics: Metrics
    cooldowns: Cooldowns
    sleep: Sleep
    shutdown: Shutdown | None

    async def read_chat(self, request: Request) -> tuple[Client, bytes]:
        """Admit the client, then read its JSON body (bounded)."""
        client = await self.admission.admit(request)
        if not is_json(request.headers.get("content-type", "")):
            raise UnsupportedMediaType("send the chat as JSON with content-type: application/json")
        return client, await read_body(request, self.config.server.max_body_bytes)

    async def begin(self, request: Request, client: Client, parsed: ParsedChat) -> tuple[Relay, dict[str, Any]]:
        """The relay for a chat, and its response's options; the client's stream slot is taken."""
        name = parsed.model or self.config.default_model
        chain = self._chain(request, name, parsed)
        rid = request_id(request)
        prompt = _last_user_message(parsed) if self.config.logging.log_prompts else None
        leave = await self.admission.enter(client)  # last: nothing below can fail and leak the slot
        tracing: Tracing | None = request.app.state.runtime.tracing
        trace = tracing.stream(request, model=name, chat=parsed.request, client=client.identity,
                               request_id=rid) if tracing is not None else None
        relay = Relay(chain, parsed.request, retry=self.config.retry, timeouts=self.config.timeouts, sleep=self.sleep,
                      events=parsed.events, faults=self.config.faults, cooldowns=self.cooldowns,
                      observer=trace or NO_OBSERVER, record_text=trace is not None and tracing.capture_content)
        self.metrics.stream_started()
        options = {"ping_interval": self.config.server.ping_interval, "send_timeout": self.config.server.send_timeout,
                   "shutdown": self.shutdown, "headers": {"x-request-id": rid}}
        options["on_done"] = self._on_done(relay, leave, rid, client, name, prompt, trace)
        return relay, options

    def _chain(self, request: Request, name: str, parsed: ParsedChat) -> list[Any]:
        upstreams = request.app.state.runtime.upstreams
        if name not in upstreams:
            raise NotFound(f"unknown model {name!r}; GET /models lists them")
        check_size(parsed.request, self.config.limits)
        models: list[ModelConfig] = [self.config.model(n) for n in [name, *self.config.model(name).fallbacks]]  # type: ignore[misc, union-attr]
        for model in models:  # a fallback must answer the same request, or be refused up front too
            check_supported(parsed.request, model.name, REGISTRY[model.adapter].takes)
        return [upstreams[m.name] for m in models]

    def _on_done(self, relay: Relay, leave: Any, rid: str, client: Client, name: str, prompt: str | None,
                 trace: Traced | None) -> OnDone:
        started = anyio.current_time()

        def done(ending: str | None) -> None:
            leave()
            outcome = relay.outcome
            if ending is not None:
                outcome.reason = ending
            duration = anyio.current_time() - started
            self.metrics.stream_ended(name, outcome, duration)
            if trace is not None:
                trace.ended(outcome, relay.recovery.text() if relay.records_text else None)
            if self.config.logging.access_log:
                access_log.write(access_log.stream_line(
                    request_id=rid, client=client.identity, model=name, outcome=outcome, duration=duration,
                    prompt=prompt))

        return done


def _last_user_message(parsed: ParsedChat) -> str:
    users = [m.text for m in parsed.request.messages if m.role == "user"]
    return users[-1][:2000] if users else ""
