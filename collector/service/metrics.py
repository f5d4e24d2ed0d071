"""Prometheus metrics of the collector, in their own ``CollectorRegistry``.

The daemon calls the methods of :class:`Metrics` (counters take a count, so call them per
batch, not per frame). Values that already live in :class:`HealthState` (per-stream last
message time and freshness, queue depths, last flush, open files, loop lag) are read from it
at scrape time by a custom collector: no double bookkeeping, no cost on the hot path.

Every metric is prefixed ``btse_collector_``; the README lists them with an alert rule.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from collector.service.health import HealthState

PREFIX = "btse_collector"
CONTENT_TYPE = CONTENT_TYPE_LATEST
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The collector's metrics. ``render()`` gives the Prometheus text exposition."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        p = PREFIX
        self._frames = Counter(
            f"{p}_frames_received", "WebSocket frames received", ["server"], registry=r
        )
        self._bytes = Counter(
            f"{p}_bytes_received", "WebSocket payload bytes received", ["server"], registry=r
        )
        self._rows = Counter(f"{p}_rows_written", "Rows written to Parquet", ["table"], registry=r)
        self._files = Counter(
            f"{p}_files_written", "Parquet files completed (renamed)", ["table"], registry=r
        )
        self._reconnects = Counter(
            f"{p}_reconnects", "Connection restarts", ["server", "reason"], registry=r
        )
        self._gaps = Counter(
            f"{p}_sequence_gaps", "Book sequence gaps detected", ["product", "symbol"], registry=r
        )
        self._resyncs = Counter(
            f"{p}_resyncs",
            "Topic resubscriptions after a book inconsistency",
            ["product", "symbol", "reason"],
            registry=r,
        )
        self._dups = Counter(
            f"{p}_duplicates",
            "Duplicate book deltas or trades ignored",
            ["product", "symbol", "kind"],
            registry=r,
        )
        self._shed = Counter(
            f"{p}_shed_rows", "Rows dropped because the writer fell behind", ["table"], registry=r
        )
        self._decode = Counter(
            f"{p}_decode_errors",
            "Frames that did not decode or match the spec",
            ["server", "reason"],
            registry=r,
        )
        self._btse = Counter(
            f"{p}_exchange_errors", "BTSE error frames by code", ["server", "code"], registry=r
        )
        self._flush = Histogram(
            f"{p}_flush_duration_seconds",
            "Time to flush buffered rows to disk",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self._lag = Histogram(
            f"{p}_event_loop_lag_seconds",
            "Event-loop wake-up delay samples",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._health_collector: _HealthCollector | None = None

    # -- counters (call per batch with a count)

    def frames_received(self, server: str, count: int = 1, nbytes: int = 0) -> None:
        self._frames.labels(server).inc(count)
        if nbytes:
            self._bytes.labels(server).inc(nbytes)

    def rows_written(self, table: str, count: int) -> None:
        self._rows.labels(table).inc(count)

    def file_written(self, table: str, count: int = 1) -> None:
        self._files.labels(table).inc(count)

    def reconnect(self, server: str, reason: str, count: int = 1) -> None:
        self._reconnects.labels(server, reason).inc(count)

    def sequence_gap(self, product: str, symbol: str, count: int = 1) -> None:
        self._gaps.labels(product, symbol).inc(count)

    def resync(self, product: str, symbol: str, reason: str, count: int = 1) -> None:
        self._resyncs.labels(product, symbol, reason).inc(count)

    def duplicate(self, product: str, symbol: str, kind: str = "book", count: int = 1) -> None:
        self._dups.labels(product, symbol, kind).inc(count)

    def shed_rows(self, table: str, count: int) -> None:
        self._shed.labels(table).inc(count)

    def decode_error(self, server: str, reason: str, count: int = 1) -> None:
        self._decode.labels(server, reason).inc(count)

    def exchange_error(self, server: str, code: int | str | None, count: int = 1) -> None:
        self._btse.labels(server, "unknown" if code is None else str(code)).inc(count)

    def observe_flush(self, seconds: float) -> None:
        self._flush.observe(seconds)

    def observe_loop_lag(self, seconds: float) -> None:
        self._lag.observe(seconds)

    # -- gauges read from HealthState at scrape time

    def bind_health(self, health: HealthState) -> None:
        """Expose per-stream, queue, flush, file and lag gauges from ``health``."""
        if self._health_collector is not None:
            self.registry.unregister(self._health_collector)
        self._health_collector = _HealthCollector(health)
        self.registry.register(self._health_collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _HealthCollector(Collector):
    def __init__(self, health: HealthState) -> None:
        self.health = health

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families depend on the registered streams

    def collect(self) -> Iterator[Metric]:
        report = self.health.evaluate()
        p = PREFIX
        labels = ["product", "kind", "symbol"]
        last = GaugeMetricFamily(
            f"{p}_stream_last_message_timestamp_seconds",
            "Unix time of the last message per stream (absent until the first one)",
            labels=labels,
        )
        age = GaugeMetricFamily(
            f"{p}_stream_silence_seconds",
            "Seconds since the last message (or since start)",
            labels=labels,
        )
        fresh = GaugeMetricFamily(
            f"{p}_stream_fresh",
            "1 while the stream is within its freshness threshold",
            labels=labels,
        )
        limit = GaugeMetricFamily(
            f"{p}_stream_max_silence_seconds", "Freshness threshold per stream", labels=labels
        )
        state = GaugeMetricFamily(
            f"{p}_stream_state", "1 for the current state of each stream", labels=[*labels, "state"]
        )
        for s in report.streams:
            values = [s.key.product, s.key.kind, s.key.symbol]
            if s.last_message is not None:
                last.add_metric(values, s.last_message)
            age.add_metric(values, s.age_s)
            fresh.add_metric(values, 1.0 if s.fresh else 0.0)
            limit.add_metric(values, s.max_silence_s)
            state.add_metric([*values, s.state], 1.0)
        yield from (last, age, fresh, limit, state)
        depth = GaugeMetricFamily(
            f"{p}_queue_depth", "Items waiting in a pipeline queue", labels=["queue"]
        )
        cap = GaugeMetricFamily(
            f"{p}_queue_capacity", "Bound of a pipeline queue", labels=["queue"]
        )
        for name, q in report.queues.items():
            depth.add_metric([name], q.depth)
            if q.capacity is not None:
                cap.add_metric([name], q.capacity)
        yield from (depth, cap)
        yield GaugeMetricFamily(
            f"{p}_open_files", "Parquet files open for writing", value=report.open_files
        )
        if report.last_flush is not None:
            yield GaugeMetricFamily(
                f"{p}_last_flush_timestamp_seconds",
                "Unix time of the last completed flush",
                value=report.last_flush,
            )
        if report.loop_lag_s is not None:
            yield GaugeMetricFamily(
                f"{p}_event_loop_lag_last_seconds",
                "Latest event-loop lag sample",
                value=report.loop_lag_s,
            )
        yield GaugeMetricFamily(
            f"{p}_writer_alive",
            "1 while the writer runs",
            value=1.0 if report.writer_alive else 0.0,
        )
        yield GaugeMetricFamily(
            f"{p}_healthy", "1 while /healthz reports healthy", value=1.0 if report.healthy else 0.0
        )
        yield GaugeMetricFamily(f"{p}_streams", "Registered streams", value=report.total)
        yield GaugeMetricFamily(
            f"{p}_streams_fresh", "Streams within their freshness threshold", value=report.fresh
        )
