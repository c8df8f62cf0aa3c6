"""Spans leave the process in batches, from the SDK's worker thread, and never hold up a stream.

`BoundedSpanProcessor` puts the SDK's `BatchSpanProcessor` behind a bound of its own, so that every span
that is not exported is counted (the SDK's processor drops silently when its queue is full): a span
that finds `max_queue_size` spans waiting is dropped at once ("queue_full"), and a batch the exporter
could not deliver (the collector down, slow past the export timeout, or refusing) is "export_failed".
Ending a span costs the event loop a lock and a deque append; the export is the worker thread's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

OnDrop = Callable[[str, int], None]  # (reason, count): a metric; called from either thread


class _Counting(SpanExporter):
    """The exporter, telling the processor how each batch went."""

    def __init__(self, exporter: SpanExporter, done: Callable[[int, bool], None]) -> None:
        self.exporter = exporter
        self.done = done

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.FAILURE
        try:
            result = self.exporter.export(spans)
        finally:
            self.done(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class BoundedSpanProcessor(SpanProcessor):
    def __init__(self, exporter: SpanExporter, *, on_drop: OnDrop, max_queue_size: int, schedule_delay: float,
                 max_export_batch_size: int, export_timeout: float) -> None:
        self.on_drop = on_drop
        self.max_pending = max_queue_size
        self._pending = 0  # accepted and not yet through the exporter: queued, or in the batch being sent
        self._lock = threading.Lock()
        self._batch = BatchSpanProcessor(
            _Counting(exporter, self._exported), max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay * 1000, max_export_batch_size=min(max_export_batch_size, max_queue_size),
            export_timeout_millis=export_timeout * 1000)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        with self._lock:
            full = self._pending >= self.max_pending
            if not full:
                self._pending += 1
        if full:
            self.on_drop("queue_full", 1)
            return
        self._batch.on_end(span)

    def _exported(self, count: int, delivered: bool) -> None:
        with self._lock:
            self._pending -= count
        if not delivered:
            self.on_drop("export_failed", count)

    def shutdown(self) -> None:
        self._batch.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)
