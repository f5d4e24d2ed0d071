"""Batches to the Store on one worker thread: Parquet encoding and file I/O never run on the loop.

The processing stage hands over column batches (``{table: {column: list}}``) with
:meth:`BatchWriter.submit`, which waits while ``max_pending`` batches are already queued for
the thread: that backpressure stops the processing stage, the frame queue fills, and frames
are shed there (counted and recorded). Memory therefore stays bounded end to end.

The thread calls ``store.append`` for every table of a batch and ``store.flush()`` at least
every ``flush_interval_s`` (also when no data arrives, so the loss window on ``kill -9`` is
bounded by the flush interval). A write that fails is logged, counted in ``rows_lost`` and
kept as ``last_error``; the writer keeps going with the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

log = structlog.get_logger()

Columns = Mapping[str, Sequence[Any]]
Batch = Mapping[str, Columns]


class StoreLike(Protocol):
    def append(self, table: str, columns: Columns) -> None: ...

    def flush(self) -> Any: ...

    def close(self) -> Any: ...


def batch_rows(batch: Batch) -> dict[str, int]:
    out: dict[str, int] = {}
    for table, columns in batch.items():
        n = len(next(iter(columns.values()))) if columns else 0
        if n:
            out[table] = n
    return out


@dataclass
class WriterStats:
    batches: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    flushes: int = 0
    last_flush_wall: float | None = None  # time.time() of the last successful flush
    last_flush_seconds: float = 0.0
    rows_lost: int = 0
    errors: int = 0
    last_error: str = ""


class BatchWriter:
    """Owns the Store: all calls into it happen on one thread, in submission order."""

    def __init__(
        self,
        store: StoreLike,
        *,
        max_pending: int = 8,
        flush_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_flush: Callable[[WriterStats, Any], None] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.store = store
        self.stats = WriterStats()
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._on_flush = on_flush
        self._slots = asyncio.Semaphore(max_pending)
        self._pending = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._last_flush = clock()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def backlog(self) -> int:
        return self._pending

    def start(self) -> None:
        """Start the timer that flushes when no batch arrives for a flush interval."""
        self._loop = asyncio.get_running_loop()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="store-flush-timer")

    async def submit(self, batch: Batch) -> None:
        """Queue ``batch`` for the thread; waits while the backlog is full."""
        if self._closed:
            raise RuntimeError("BatchWriter is closed")
        if not batch:
            return
        await self._slots.acquire()
        self._pending += 1
        loop = self._loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._write, batch)
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        self._pending -= 1
        self._slots.release()

    def _write(self, batch: Batch) -> None:  # worker thread
        try:
            for table, columns in batch.items():
                if columns and len(next(iter(columns.values()))):
                    self.store.append(table, columns)
        except Exception as exc:  # keep writing later batches; make the loss visible
            lost = sum(batch_rows(batch).values())
            self.stats.rows_lost += lost
            self._failed("store_append_failed", exc, rows_lost=lost)
        else:
            self.stats.batches += 1
            for table, n in batch_rows(batch).items():
                self.stats.rows[table] = self.stats.rows.get(table, 0) + n
        if self._clock() - self._last_flush >= self.flush_interval_s:
            self._flush()

    def _flush(self) -> None:  # worker thread
        started = time.perf_counter()
        self._last_flush = self._clock()
        try:
            result = self.store.flush()
        except Exception as exc:
            self._failed("store_flush_failed", exc)
            return
        self.stats.flushes += 1
        self.stats.last_flush_seconds = time.perf_counter() - started
        self.stats.last_flush_wall = time.time()
        loop = self._loop
        if self._on_flush is not None and loop is not None and not loop.is_closed():
            # the callback runs on the event loop, never on this thread
            loop.call_soon_threadsafe(self._on_flush, self.stats, result)

    def _failed(self, event: str, exc: Exception, **fields: Any) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.error(event, error=self.stats.last_error, **fields)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self.flush_interval_s - (self._clock() - self._last_flush)
            await asyncio.sleep(max(wait, self.flush_interval_s / 10))
            if self._clock() - self._last_flush >= self.flush_interval_s:
                await loop.run_in_executor(self._executor, self._flush)

    async def flush(self) -> None:
        """Flush now (after every batch submitted so far)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._flush)

    async def close(self) -> None:
        """Write every pending batch, flush, close the store and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        loop = self._loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._flush)
        try:
            await loop.run_in_executor(self._executor, self.store.close)
        finally:
            self._executor.shutdown(wait=True)
