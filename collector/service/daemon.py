"""The collector daemon: ``startup()``, ``run()``, ``shutdown()`` (uvicorn's lifecycle).

startup
    specs → topics per server; credentials (OTC) resolved before anything touches the network;
    the Store opened in a thread (it recovers leftover journals and temp files first); the
    pipeline started (writer thread, processing task), then the connections; the health/metrics
    HTTP server; ``READY=1`` once every connection's first subscription is acknowledged (or
    ``ready_timeout`` passed: the collector keeps retrying forever, a restart would not help).
run
    waits for SIGTERM/SIGINT. The handler only sets an event.
shutdown (written order, under ``shutdown_timeout``, shorter than systemd's TimeoutStopSec=30):
    1. ``STOPPING=1`` (systemd: "beginning its shutdown"; the watchdog is no longer fed)
    2. stop subscribing / reading: every socket is closed
    3. drain the frame queue through the processing stage
    4. flush and close the writer: journals published as Parquet, atomically renamed
    5. stop the HTTP server
    Exit code 0 when all of it finished in time, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import structlog

from collector.config import Config, Credentials, resolve_credentials
from collector.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from collector.feed.connection import Authenticator, Connection, ConnectionSettings, TopicFrames
from collector.feed.policies import Fatal
from collector.feed.supervisor import Supervisor
from collector.feed.topics import (
    KeyAuth,
    QuoteFrames,
    SubscribeFrames,
    Subscriptions,
    server_urls,
    subscriptions,
)
from collector.pipeline.processor import Processor
from collector.pipeline.queue import FrameQueue
from collector.pipeline.writer import BatchWriter, WriterStats
from collector.protocol import native
from collector.protocol.book import LIVE
from collector.protocol.normalizer import Normalizer
from collector.protocol.symbols import canonical_symbol
from collector.service.health import HealthState, StreamKey
from collector.service.http import HealthServer
from collector.service.lag import LoopLagMonitor
from collector.service.metrics import Metrics
from collector.service.sdnotify import Notifier
from collector.service.ticker import ServiceTicker
from collector.specs import SpecRegistry, load_registry
from collector.storage.writer import Store

log = structlog.get_logger()

SHUTDOWN_TIMEOUT_S = 20.0  # < TimeoutStopSec=30 in deploy/btse-collector.service
READY_TIMEOUT_S = 30.0
WRITER_MAX_PENDING = 4  # batches queued for the writer thread before the pipeline waits


GC_THRESHOLD = (50_000, 50, 100)


def tune_gc() -> tuple[int, ...]:
    """Fewer, cheaper garbage collections on the hot path.

    The pipeline allocates many short-lived containers (decoded frames, row tuples) but builds
    few reference cycles. The default gen-0 threshold (700 allocations) makes the collector
    traverse the young objects hundreds of times a second; ``gc.freeze()`` moves everything
    allocated during startup (specs, schemas, modules) out of every future collection.
    Measured in bench part 2: about a quarter less CPU in the Normalizer. Returns the previous
    thresholds (``shutdown`` restores them and unfreezes).
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return before


def _pylist(column: Any) -> list[Any]:
    """A batch column as a list (the pipeline hands over lists or Arrow arrays)."""
    return column if isinstance(column, list) else list(column.to_pylist())


def connection_settings(config: Config) -> ConnectionSettings:
    c = config.connection
    return ConnectionSettings(
        ping_interval=c.ping_interval_s,
        pong_timeout=c.pong_timeout_s,
        stale_after=c.stale_after_s,
        connect_timeout=c.open_timeout_s,
        auth_timeout=c.open_timeout_s,
        max_msg_size=c.max_frame_bytes,
        backoff_initial=c.backoff_initial_s,
        backoff_cap=max(c.backoff_max_s, c.backoff_initial_s),
        backoff_jitter=c.backoff_jitter,
    )


@dataclass
class _Seen:
    """Counters seen at the previous observation (metrics are fed with differences)."""

    frames: dict[str, int]
    reasons: dict[tuple[str, str], int]
    rows: dict[str, int]
    books: dict[tuple[str, str, int], tuple[int, int, int, int]]  # last_seq, gaps, crossed, dups
    shed: int = 0
    decode_failures: int = 0
    trade_dups: dict[tuple[str, str], int] = field(default_factory=dict)
    errors: int = 0
    exchange_errors: dict[tuple[str, int | None], int] = field(default_factory=dict)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        registry: SpecRegistry | None = None,
        notifier: Notifier | None = None,
        environ: Mapping[str, str] | None = None,
        http: bool = True,
        install_signals: bool = True,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT_S,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.registry = registry
        self.notifier = notifier or Notifier(environ)
        self.environ = environ
        self.http_enabled = http and config.health.listen is not None
        self.install_signals = install_signals
        self.shutdown_timeout = shutdown_timeout
        self.ready_timeout = ready_timeout
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self.exit_code = EXIT_OK
        self.store: Store | None = None
        self.normalizer: Normalizer | None = None
        self.queue: FrameQueue | None = None
        self.writer: BatchWriter | None = None
        self.supervisor: Supervisor | None = None
        self.processor: Processor | None = None
        self.subs = Subscriptions()
        self.health = HealthState(config.health)
        self.metrics = Metrics()
        self.metrics.bind_health(self.health)
        self.http: HealthServer | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stream_keys: dict[str, StreamKey] = {}  # topic -> health stream
        self._streams_by_symbol: dict[tuple[str, str, str], list[StreamKey]] = {}
        self._seen = _Seen({}, {}, {}, {})
        self._book_seq: dict[tuple[str, str, int], int] = {}  # last seq counted per LIVE book
        self._signals: list[int] = []
        self._gc_before: tuple[int, ...] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self) -> int:
        """startup → run → shutdown; returns the exit code."""
        try:
            await self.startup()
        except BaseException:
            await self.shutdown()
            raise
        try:
            await self.run()
        finally:
            await self.shutdown()
        return self.exit_code

    async def startup(self) -> None:
        cfg = self.config
        started = time.monotonic()
        registry = self.registry = self.registry or load_registry(cfg.specs_dir)
        self.subs = subs = subscriptions(cfg, registry)
        urls = server_urls(cfg, registry)
        credentials: Credentials | None = None
        if cfg.needs_credentials and cfg.otc is not None:
            credentials = resolve_credentials(cfg.otc.credentials, self.environ)
        s = cfg.storage
        self.store = store = await asyncio.to_thread(
            Store,
            cfg.data_dir,
            flush_interval_s=s.flush_interval_s,
            rotate_interval_s=s.rotate_interval_s,
            rotate_max_bytes=s.rotate_max_bytes,
            row_group_rows=s.row_group_rows,
            compression_level=s.compression_level,
        )
        b = cfg.book
        self.normalizer = norm = Normalizer(
            registry,
            snapshot_interval_s=b.snapshot_interval_s,
            snapshot_depth=b.snapshot_depth,
            validate_sample_rate=b.validate_sample_rate,
        )
        # trade de-duplication across restarts: by exchange time, as BTSE's tradeIds are not
        # monotonic (the re-sent batch after subscribe is at or before the newest stored trade)
        stored = await asyncio.to_thread(store.newest_trades)
        for (product, symbol), (timestamp_us, trade_ids) in stored.items():
            norm.seed_stored_trades(product, symbol, timestamp_us, trade_ids)
        p = cfg.pipeline
        self.queue = queue = FrameQueue(p.queue_max_frames)
        self.writer = writer = BatchWriter(
            store,
            max_pending=WRITER_MAX_PENDING,
            flush_interval_s=s.flush_interval_s,
            on_flush=self._flushed,
        )

        def frames_for(server: str) -> TopicFrames:
            return QuoteFrames(subs.otc_requests) if server == otc_server else SubscribeFrames()

        def auth_for(server: str) -> Authenticator | None:
            if server != otc_server or credentials is None:
                return None
            return KeyAuth(credentials, registry.server(server).auth_path or "/ws/otc")

        otc_server = next((t.server for t in subs.topics if t.stream.kind == "otc_quote"), None)
        self.supervisor = supervisor = Supervisor(
            subs.by_server(),
            urls,
            queue,
            frames_for,
            settings=connection_settings(cfg),
            auth_for=auth_for,
            max_topics_per_connection=cfg.connection.max_topics_per_connection,
            on_fatal=self._fatal,
        )
        self.processor = Processor(
            queue,
            norm,
            writer,
            supervisor,
            product_of=lambda server: registry.server(server).product,
            batch_max_rows=p.batch_max_rows,
            batch_max_delay_s=p.batch_max_delay_s,
            keep_raw=s.raw,
            otc_requests=subs.otc_requests,
            on_ack=self._acked,
            on_batch=self._batch_seen,
        )
        for t in subs.topics:
            key = self.health.register_stream(
                t.stream.product, t.stream.kind, t.stream.symbol, t.topic
            )
            self._stream_keys[t.topic] = key
            # rows carry the canonical symbol (ETHPFC, BTC-PERP-USDT -> ETH-PERP, BTC-PERP)
            ident = (t.stream.product, t.stream.kind, canonical_symbol(t.stream.symbol))
            self._streams_by_symbol.setdefault(ident, []).append(key)
        self.health.set_queue("frames", 0, p.queue_max_frames)
        writer.start()
        self._spawn("processor", self.processor.run())
        supervisor.start()
        if self.http_enabled and cfg.health.listen is not None:
            host, port = cfg.health.listen
            self.http = HealthServer(self.health, self.metrics, host=host, port=port)
            await self.http.start()
        lag = LoopLagMonitor(self._loop_lag)
        self._spawn("loop-lag", lag.run())
        self._spawn("observe", self._observe_forever())
        if self.install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig)
                self._signals.append(sig)
        log.info(
            "collector_starting",
            data_dir=str(cfg.data_dir),
            topics=len(subs.topics),
            connections=len(supervisor.connections),
            recovered=len(store.recovery_report.items),
            protocol_core=native.implementation(),  # "c" (speedups built) or "python"
        )
        waiter = asyncio.ensure_future(self.ready.wait())
        stopper = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait(
            (waiter, stopper), timeout=self.ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        stopper.cancel()
        if self.stop_requested.is_set():
            log.info("stop_requested_during_startup")
            return  # run() returns at once; shutdown() drains what arrived
        if not self.ready.is_set():
            log.warning(
                "ready_without_acks",
                waited_s=round(time.monotonic() - started, 3),
                detail="not every connection acknowledged a subscription yet; retrying",
            )
        self._observe(time.time())
        self._gc_before = tune_gc()
        ticker = ServiceTicker(self.health, self.notifier)
        self.notifier.ready(self.health.evaluate().status_line())
        self._spawn("ticker", ticker.run())
        log.info("collector_ready", startup_s=round(time.monotonic() - started, 3))

    async def run(self) -> None:
        await self.stop_requested.wait()

    def request_stop(self, signum: int | None = None) -> None:
        """The signal handler: only sets the event."""
        if self.stop_requested.is_set():
            log.warning("shutdown_already_requested", signal=signum)
        self.stop_requested.set()

    async def shutdown(self) -> None:
        if getattr(self, "_shut_down", False):
            return
        self._shut_down = True
        self.notifier.stopping("stopping: draining and flushing")
        log.info("collector_stopping")
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        try:
            async with asyncio.timeout(self.shutdown_timeout):
                await self._shutdown_steps()
        except TimeoutError:
            self.exit_code = EXIT_FAILURE
            log.error("shutdown_timeout", timeout_s=self.shutdown_timeout)
        except Exception as exc:
            self.exit_code = EXIT_FAILURE
            log.error("shutdown_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            for task in self._tasks.values():
                task.cancel()
            self.notifier.close()
            if self._gc_before is not None:
                gc.unfreeze()
                gc.set_threshold(*self._gc_before)
                self._gc_before = None

    async def _shutdown_steps(self) -> None:
        for name in ("ticker", "observe", "loop-lag"):
            await self._cancel(name)
        if self.supervisor is not None:  # 2. stop reading
            await self.supervisor.stop(timeout=5.0)
        await self._cancel("processor")
        if self.processor is not None:  # 3. drain the queue
            await self.processor.drain()
        if self.writer is not None:  # 4. flush and close every file
            await self.writer.close()
            if self.writer.stats.errors:
                log.error(
                    "writer_errors",
                    errors=self.writer.stats.errors,
                    rows_lost=self.writer.stats.rows_lost,
                    last=self.writer.stats.last_error,
                )
        elif self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self.http is not None:  # 5.
            await self.http.stop()
        log.info(
            "collector_stopped",
            frames=self.processor.frames if self.processor else 0,
            rows=dict(self.writer.stats.rows) if self.writer else {},
            trade_duplicates=self.normalizer.stats.trade_duplicates if self.normalizer else 0,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _spawn(self, name: str, coro: Any) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks[name] = task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or self.stop_requested.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")
            self.exit_code = EXIT_FAILURE
            self.stop_requested.set()

    async def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _fatal(self, conn: Connection, decision: Fatal) -> None:
        log.error("connection_fatal", conn=conn.conn_id, reason=decision.reason)
        self.exit_code = EXIT_CONFIG
        self.stop_requested.set()

    def _acked(self, conn_id: str, topics: tuple[str, ...]) -> None:
        now = time.time()
        for topic in topics:
            key = self._stream_keys.get(topic)
            if key is not None:
                self.health.message(key, now, 0)
        self._check_ready()

    def _check_ready(self) -> None:
        if self.ready.is_set() or self.supervisor is None or self.processor is None:
            return
        acked = self.processor.acked
        for conn_id, conn in self.supervisor.connections.items():
            if conn.topics and conn_id not in acked and not self._otc_conn(conn):
                return
        self.ready.set()

    def _otc_conn(self, conn: Connection) -> bool:
        return (
            bool(conn.topics)
            and conn.topics[0] in self.subs.otc_requests
            and conn.connected.is_set()
        )

    def _loop_lag(self, lag: float) -> None:
        self.health.set_loop_lag(lag)
        self.metrics.observe_loop_lag(lag)

    def _flushed(self, stats: WriterStats, result: Any) -> None:
        """After a flush (called on the loop): health, metrics, snapshots the store asks for."""
        self.health.flushed()
        self.metrics.observe_flush(stats.last_flush_seconds)
        if self.store is not None:
            self.health.set_open_files(self.store.open_files)
        wanted: frozenset[tuple[str, ...]] = getattr(result, "snapshot_wanted", frozenset())
        published = getattr(result, "published", [])
        for path in published:
            try:  # <data_dir>/<table>/<partitions...>/<file>.parquet
                self.metrics.file_written(path.relative_to(self.config.data_dir).parts[0])
            except ValueError:
                continue
        if wanted and self.supervisor is not None:
            for t in self.subs.topics:
                if t.stream.kind == "book" and (t.stream.product, t.stream.symbol) in wanted:
                    self.supervisor.resync("", t.topic)

    def _batch_seen(self, batch: Mapping[str, Mapping[str, Any]]) -> None:
        """Freshness and message counts of every stream, stamped when a batch leaves the
        processing stage (so a stream's freshness is as fine as ``pipeline.batch_max_delay_s``).

        Messages: an L1 frame is one ``source=l1`` quote row, a trade one trade row, an OTC
        quote one row (a few C-level passes over those columns per batch; columns may be lists
        or Arrow arrays); a book message is one sequence number its LIVE book advanced by since
        the previous batch (no pass over the book rows; a book that is resyncing stores
        nothing and therefore gets no message)."""
        now = time.time()
        seen: Counter[tuple[str, str, str]] = Counter()
        quotes = batch.get("quotes")
        if quotes:
            seen.update(
                (p, "l1", s)
                for p, s, src in zip(
                    _pylist(quotes["product"]),
                    _pylist(quotes["symbol"]),
                    _pylist(quotes["source"]),
                    strict=True,
                )
                if src == "l1"
            )
        trades = batch.get("trades")
        if trades:
            seen.update(
                zip(_pylist(trades["product"]), repeat("trades"), _pylist(trades["symbol"]))
            )
        otc = batch.get("otc_quotes")
        if otc:
            seen.update(("otc", "otc_quote", s) for s in _pylist(otc["symbol"]))
        for ident, n in seen.items():
            for key in self._streams_by_symbol.get(ident, ()):
                self.health.message(key, now, n)
                self.health.set_state(key, "live", now)
        norm = self.normalizer
        if norm is None:
            return
        last = self._book_seq
        for k3, book in norm.books.items():
            seq = book.last_seq
            if book.state is not LIVE or seq == last.get(k3, -1):
                continue
            prev = last.get(k3, -1)
            last[k3] = seq
            book_key = self._stream_keys.get(book.topic or "")
            if book_key is not None:  # the state (syncing/live/resyncing) is the observer's
                self.health.message(book_key, now, seq - prev if 0 <= prev < seq else 1)

    async def _observe_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self._observe(time.time())

    def _observe(self, now: float) -> None:
        """Feed health and metrics from the counters of the parts (a few dict walks a second)."""
        sup, norm, queue, proc = self.supervisor, self.normalizer, self.queue, self.processor
        if sup is None or norm is None or queue is None or proc is None:
            return
        seen, m, h = self._seen, self.metrics, self.health
        frames_by_server: dict[str, int] = {}
        down: set[str] = set()  # topics of connections that are not connected
        for conn in sup.connections.values():
            frames_by_server[conn.server] = frames_by_server.get(conn.server, 0) + conn.stats.frames
            for reason, n in conn.stats.reasons.items():
                k = (conn.server, reason)
                if n > seen.reasons.get(k, 0):
                    for _ in range(n - seen.reasons.get(k, 0)):
                        m.reconnect(conn.server, reason)
                    seen.reasons[k] = n
            if not conn.connected.is_set():
                down.update(conn.topics)
                for topic in conn.topics:
                    key = self._stream_keys.get(topic)
                    if key is not None:
                        h.set_state(key, "down", now)
        for server, n in frames_by_server.items():
            if n > seen.frames.get(server, 0):
                m.frames_received(server, n - seen.frames.get(server, 0))
                seen.frames[server] = n
        for (product, symbol, grouping), book in norm.books.items():
            k3 = (product, symbol, grouping)
            prev = seen.books.get(k3, (-1, 0, 0, 0))
            cur = (book.last_seq, book.gap_count, book.crossed_count, book.duplicate_count)
            for _ in range(cur[1] - prev[1]):
                m.sequence_gap(product, symbol)
                m.resync(product, symbol, "gap")
            for _ in range(cur[2] - prev[2]):
                m.resync(product, symbol, "crossed")
            if cur[3] > prev[3]:
                m.duplicate(product, symbol, "book", cur[3] - prev[3])
            seen.books[k3] = cur
            key = self._stream_keys.get(book.topic or "")
            if key is not None and book.topic not in down:
                h.set_state(key, str(book.state.value), now)
        for (product, symbol), n in norm.trade_duplicates().items():
            if n > seen.trade_dups.get((product, symbol), 0):
                m.duplicate(product, symbol, "trades", n - seen.trade_dups.get((product, symbol), 0))
                seen.trade_dups[(product, symbol)] = n
        for ek, n in proc.exchange_errors_by_server.items():
            if n > seen.exchange_errors.get(ek, 0):
                m.exchange_error(ek[0], ek[1], n - seen.exchange_errors.get(ek, 0))
                seen.exchange_errors[ek] = n
        if proc.shed_frames > seen.shed:
            m.shed_rows("frames", proc.shed_frames - seen.shed)
            seen.shed = proc.shed_frames
        st = norm.stats
        if st.decode_failures > seen.decode_failures:
            m.decode_error("all", "decode", st.decode_failures - seen.decode_failures)
            seen.decode_failures = st.decode_failures
        if self.writer is not None:
            for table, n in self.writer.stats.rows.items():
                if n > seen.rows.get(table, 0):
                    m.rows_written(table, n - seen.rows.get(table, 0))
                    seen.rows[table] = n
            h.set_writer_alive(
                not self.writer.stats.last_error or self.writer.stats.errors == 0,
                self.writer.stats.last_error or None,
            )
        h.set_queue("frames", queue.depth, queue.max_frames)
        if self.writer is not None:
            h.set_queue("writer_batches", self.writer.backlog, WRITER_MAX_PENDING)
