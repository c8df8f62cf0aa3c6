"""Prometheus metrics, one registry per app (no process-wide default registry).

Everything is recorded once per stream, from its Outcome when it ends, or once per rejected request:
nothing here runs per chunk. Label values come from small fixed sets (configured model names, the
proxy's own error types, a known list of finish reasons), so no client or upstream can grow them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from llm_sse_proxy.proxy.relay.outcome import Outcome
from llm_sse_proxy.proxy.telemetry.budget_metrics import BudgetMetrics

CONTENT_TYPE = CONTENT_TYPE_LATEST
KNOWN_REASONS = frozenset(
    {"stop", "length", "content_filter", "tool_calls", "function_call", "error", "cancelled", "shutdown", "send_timeout"}
)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class _Children:
    """A metric's children by label values, each looked up once: prometheus' `labels` validates the
    values and takes a lock on every call. Bounded as the label values are (see above)."""

    __slots__ = ("metric", "children")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active = Gauge("llm_proxy_active_streams", "Streams open now", registry=r)
        self.streams = Counter("llm_proxy_streams", "Streams ended, by model and reason", ["model", "reason"], registry=r)
        self.ttft = Histogram("llm_proxy_time_to_first_token_seconds", "From request to first event sent", ["model"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.duration = Histogram("llm_proxy_stream_duration_seconds", "From request to stream end", ["model"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.retries = Counter("llm_proxy_retries", "Upstream attempts retried, by the error", ["type"], registry=r)
        self.fallbacks = Counter("llm_proxy_fallbacks", "Fallback models tried", ["model"], registry=r)
        self.upstream_errors = Counter("llm_proxy_upstream_errors", "Upstream errors, by type", ["type"], registry=r)
        self.disconnects = Counter("llm_proxy_client_disconnects", "Clients gone before the end", ["reason"], registry=r)
        self.grace = Counter("llm_proxy_resume_grace", "Resumable streams whose client left: what came of the grace",
                             ["outcome"], registry=r)
        self.rejected = Counter("llm_proxy_rejected_requests", "Requests refused before streaming", ["reason"], registry=r)
        self.tokens = Counter("llm_proxy_tokens", "Tokens the upstreams reported", ["model", "direction"], registry=r)
        self.hedges = Counter("llm_proxy_hedges", "Streams whose silent first attempt was hedged (timeouts.hedge_after)",
                              ["model"], registry=r)
        self.recoveries = Counter("llm_proxy_recoveries", "Answers recovered mid-stream, by kind", ["model", "kind"],
                                  registry=r)
        self.malformed = Counter("llm_proxy_malformed_chunks", "Malformed upstream chunks", ["model"], registry=r)
        self.shared_state_errors = Counter("llm_proxy_shared_state_errors", "Redis operations that failed, by operation",
                                           ["operation"], registry=r)
        self.deployment_streams = Counter("llm_proxy_deployment_streams", "Streams by the deployment that answered",
                                          ["model", "deployment", "reason"], registry=r)
        self.deployment_ttft = Histogram("llm_proxy_deployment_time_to_first_token_seconds",
                                         "From request to first event sent, by deployment", ["model", "deployment"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.store_failures = Counter("llm_proxy_resume_store_failures",
                                      "Resumable streams the store failed: refused new, or ended (unavailable, fenced)",
                                      ["reason"], registry=r)
        self.budgets = BudgetMetrics(r)  # billed tokens and cost, budget refusals (issue 23)
        self.reconnects = Counter("llm_proxy_resume_reconnects", "Readers that came back to a resumable stream",
                                  registry=r)
        self.store_bytes = Gauge("llm_proxy_resume_store_bytes", "Frame bytes the in-process resumable store holds",
                                 registry=r)
        self.spans_dropped_total = Counter("llm_proxy_trace_spans_dropped",
                                           "Trace spans not exported: queue_full, export_failed (issue 25)",
                                           ["reason"], registry=r)
        # What every stream records, by model: its children kept.
        self._streams, self._duration, self._ttft = _Children(self.streams), _Children(self.duration), _Children(self.ttft)
        self._tokens = _Children(self.tokens)
        self._deployment_streams, self._deployment_ttft = _Children(self.deployment_streams), _Children(self.deployment_ttft)

    def stream_started(self) -> None:
        self.active.inc()

    def stream_ended(self, model: str, outcome: Outcome, duration: float) -> None:
        self.active.dec()
        answered = outcome.model or model
        reason = outcome.reason if outcome.reason in KNOWN_REASONS else "other"
        self._streams(model, reason).inc()
        self._duration(answered).observe(duration)
        if outcome.ttft is not None:
            self._ttft(answered).observe(outcome.ttft)
        if outcome.deployment is not None:  # a configured label: as bounded as the model names
            self._deployment_streams(answered, outcome.deployment, reason).inc()
            if outcome.ttft is not None:
                self._deployment_ttft(answered, outcome.deployment).observe(outcome.ttft)
        for error_type in outcome.retries:
            self.retries.labels(error_type).inc()
        for error_type in (*outcome.retries, *outcome.failures):
            self.upstream_errors.labels(error_type).inc()
        if outcome.fallbacks:
            self.fallbacks.labels(model).inc(outcome.fallbacks)
        if (left := outcome.left_early()) is not None:
            self.disconnects.labels(left).inc()
        if outcome.grace is not None:
            self.grace.labels(outcome.grace).inc()
        if outcome.recovered is not None:
            self.recoveries.labels(model, outcome.recovered).inc()
        if outcome.hedged:
            self.hedges.labels(model).inc()
        if outcome.malformed:
            self.malformed.labels(model).inc(outcome.malformed)
        if outcome.usage is not None:
            self._tokens(answered, "in").inc(outcome.usage.prompt_tokens)
            self._tokens(answered, "out").inc(outcome.usage.completion_tokens)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def shared_state_error(self, operation: str) -> None:
        self.shared_state_errors.labels(operation).inc()

    def store_failure(self, reason: str) -> None:
        self.store_failures.labels(reason).inc()

    def resumed(self) -> None:
        self.reconnects.inc()

    def watch_breakers(self, read: Callable[[], Iterable[tuple[str, str, bool]]]) -> None:
        """`llm_proxy_breaker_open{model,deployment}`, read from the routing state at each scrape."""
        self.registry.register(_Breakers(read))

    def watch_store_size(self, size: Callable[[], float]) -> None:
        """The memory store's size, read at each scrape (nothing is done per frame)."""
        self.store_bytes.set_function(size)

    def spans_dropped(self, reason: str, count: int) -> None:
        """Called from the span exporter's thread too: prometheus_client's counters take a lock."""
        self.spans_dropped_total.labels(reason).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Breakers(Collector):
    """Each deployment's breaker as this process sees it: 1 open (or half-open), 0 closed."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, bool]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("llm_proxy_breaker_open", "Deployments whose circuit breaker is open or half-open "
                                   "(this process's view)", labels=["model", "deployment"])
        for model, deployment, is_open in self.read():
            family.add_metric([model, deployment], 1.0 if is_open else 0.0)
        yield family
