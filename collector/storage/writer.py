"""The crash-safe Parquet store: :class:`Store`.

Durability vs. row-group size — the trade-off, explicitly:

* ``append(table, columns)`` validates a column batch against ``schemas/<table>.yaml`` and
  buffers it in memory, split by partition.
* ``flush()`` (call it every ``flush_interval_s``) appends the buffered rows of each partition to
  that partition's **journal** (``.<stem>.journal``, an Arrow IPC stream, append-only) and
  fsyncs it. After ``flush()`` returns the rows survive ``kill -9`` and power loss.
* A journal is **published** as one Parquet file (zstd, row groups of ``row_group_rows``) when it
  rotates: after ``rotate_interval_s`` or ``rotate_max_bytes`` of journal, at a date change, and
  on ``close()``. Publishing writes ``.<stem>.parquet.tmp``, fsyncs, ``os.replace``\\s it to
  ``<stem>.parquet``, fsyncs the folder and only then deletes the journal.

So Parquet readers only ever see complete files with big row groups: rows are *durable* at
flush and *published* at rotation. ``btse-collector query`` (:mod:`collector.storage.query`,
:mod:`collector.storage.live`) also reads the complete batches of the open journals, so there
rows are *visible* from the flush on (``--published-only``: from rotation). ``kill -9`` loses
only rows appended since the last flush; journals left behind are published by
:func:`collector.storage.recovery.recover` on the next start (``Store`` runs it before writing).

``book_changes`` files start with a snapshot: when a book_changes file is due to rotate, the
store keeps writing to it and asks for a snapshot (``FlushResult.snapshot_wanted`` /
:meth:`Store.snapshot_wanted`, as ``(product, symbol)``); the first ``is_snapshot`` row that
arrives for that book starts the new file. If none arrives within another rotation interval
(or twice the size bound) the file is published anyway and an ``error`` event records it.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from collector.errors import RowsRejected, StorageError, StoreWriteError
from collector.storage import files, layout
from collector.storage.recovery import RecoveryReport, recover
from collector.storage.schemas import TableSchema, load_schemas

log = structlog.get_logger()

#: Tables whose files must begin with a snapshot, and the column that marks snapshot rows.
SNAPSHOT_HEAD: dict[str, str] = {"book_changes": "is_snapshot"}

# (table, route values, day) — day is None for SNAPSHOT_HEAD tables (one open file per book).
RouteKey = tuple[str, tuple[str, ...], int | None]


@dataclass
class FlushResult:
    """What one :meth:`Store.flush` did."""

    rows: dict[str, int] = field(default_factory=dict)  # rows made durable, per table
    published: list[Path] = field(default_factory=list)  # Parquet files made visible
    snapshot_wanted: frozenset[tuple[str, ...]] = frozenset()  # (product, symbol) of books


@dataclass
class _OpenFile:
    partition: layout.Partition
    directory: Path
    stem: str
    journal: files.Journal
    opened_at: float
    day: int
    rotate_reason: str | None = None
    rotate_since: float = 0.0


def _arrow_errors() -> tuple[type[BaseException], ...]:
    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError, ValueError)


def to_arrow(schema: TableSchema, columns: Mapping[str, Any]) -> pa.Table:
    """Validate a column batch against ``schema`` and build the Arrow table.

    Raises :class:`RowsRejected` naming the table and the offending column.
    """
    if not isinstance(columns, Mapping):
        raise RowsRejected(schema.name, None, f"expected a dict of column lists, got {type(columns).__name__}")
    expected = schema.column_names
    for name in expected:
        if name not in columns:
            raise RowsRejected(schema.name, name, "missing column")
    for name in columns:
        if name not in expected:
            raise RowsRejected(schema.name, str(name), f"unknown column (not in {schema.source})")
    length: int | None = None
    arrays: list[pa.Array] = []
    for col in schema.columns:
        values = columns[col.name]
        try:
            n = len(values)
        except TypeError:
            raise RowsRejected(schema.name, col.name, f"expected a list, got {type(values).__name__}") from None
        if length is None:
            length = n
        elif n != length:
            raise RowsRejected(schema.name, col.name, f"has {n} values, expected {length} like {expected[0]}")
        try:
            arr = _column_array(values, col.arrow_type, n)
        except _arrow_errors() as exc:
            raise RowsRejected(schema.name, col.name, f"expected {col.type}: {exc}") from None
        if not col.nullable and arr.null_count:
            raise RowsRejected(schema.name, col.name, f"{arr.null_count} null value(s) in a non-nullable column")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema.arrow)


def _family(t: pa.DataType) -> str:
    """Arrow types that convert into each other without reinterpreting the values."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_timestamp(t):
        return "integer"  # timestamp_us columns take int µs since the epoch
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return str(t)


def _column_array(values: Any, arrow_type: pa.DataType, n: int) -> pa.Array:
    """One column as an Arrow array of ``arrow_type``, in one C-level call.

    Arrow input is cast (safe cast: a lossy one raises). A list of strings that are all the
    same value (exchange, product, symbol, server, connection in a batch) is built from one
    scalar: ``list.count`` compares by identity first, ~50x cheaper than converting each item.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if values.type == arrow_type:
            return values
        if _family(values.type) != _family(arrow_type):
            raise TypeError(f"got an Arrow {values.type} array")
        return values.cast(arrow_type)  # safe: overflow or truncation raises
    if (
        n > 1
        and type(values) is list
        and pa.types.is_string(arrow_type)
        and type(values[0]) is str
        and values.count(values[0]) == n
    ):
        return pa.repeat(pa.scalar(values[0], arrow_type), n)
    return pa.array(values, type=arrow_type)


class Store:
    """Synchronous, crash-safe writer of the Parquet store (see the module docstring).

    Use from one thread at a time (the pipeline calls it through ``asyncio.to_thread``); a lock
    makes concurrent calls safe, not parallel. One ``Store`` per data folder: a second one
    fails with :class:`StorageError` (``flock`` on ``<data_dir>/.btse-collector.lock``).
    """

    def __init__(
        self,
        data_dir: Path | str,
        flush_interval_s: float = 2.0,
        rotate_interval_s: float = 900.0,
        rotate_max_bytes: int = 256 * 1024 * 1024,
        row_group_rows: int = 500_000,
        *,
        max_buffered_rows: int = 5_000_000,
        compression_level: int | None = None,
        schemas: Mapping[str, TableSchema] | None = None,
        clock: Callable[[], float] = time.time,
        recover_on_start: bool = True,
    ) -> None:
        if flush_interval_s <= 0 or rotate_interval_s <= 0:
            raise ValueError("flush_interval_s and rotate_interval_s must be > 0")
        if rotate_max_bytes <= 0 or row_group_rows <= 0 or max_buffered_rows <= 0:
            raise ValueError("rotate_max_bytes, row_group_rows and max_buffered_rows must be > 0")
        self.data_dir = Path(data_dir)
        self.flush_interval_s = flush_interval_s
        self.rotate_interval_s = rotate_interval_s
        self.rotate_max_bytes = rotate_max_bytes
        self.row_group_rows = row_group_rows
        self.max_buffered_rows = max_buffered_rows
        self.compression_level = compression_level
        self.schemas: dict[str, TableSchema] = dict(schemas) if schemas is not None else load_schemas()
        self._clock = clock
        self._lock = threading.RLock()
        self._buffers: dict[RouteKey, list[pa.Table]] = {}
        self._buffered_rows = 0
        self._open: dict[RouteKey, _OpenFile] = {}
        self._to_publish: list[_OpenFile] = []
        self._closed = False
        self.last_flush_at: float | None = None
        self.shed_rows: dict[str, int] = {}
        self.rows_written: dict[str, int] = {}
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.data_dir / layout.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise files.write_error(self.data_dir, "opening the data folder", exc) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise StorageError(str(self.data_dir), "another collector is writing this data folder") from exc
        self.recovery_report = RecoveryReport()
        if recover_on_start:
            self.recovery_report = recover(self.data_dir, self.schemas, row_group_rows=row_group_rows)
            ev = self.recovery_report.event_columns(self._now_us())
            if ev["kind"]:
                self.append("events", ev)
        self._write_anchors()
        log.info("store_opened", data_dir=str(self.data_dir), recovered=len(self.recovery_report.items))

    # -- public API ---------------------------------------------------------------------

    def append(self, table: str, columns: Mapping[str, Any]) -> None:
        """Validate and buffer a column batch; written at the next :meth:`flush`."""
        with self._lock:
            if self._closed:
                raise StorageError(str(self.data_dir), "the store is closed")
            schema = self.schemas.get(table)
            if schema is None:
                raise RowsRejected(table, None, f"unknown table (known: {', '.join(self.schemas)})")
            arrow = to_arrow(schema, columns)
            if arrow.num_rows == 0:
                return
            groups = self._split(schema, arrow)
            for (route, day), _ in groups:
                layout.make_partition(schema, route, layout.day_to_date(day))  # validates names
            for (route, day), part in groups:
                key: RouteKey = (table, route, None if table in SNAPSHOT_HEAD else day)
                self._buffers.setdefault(key, []).append(part)
                self._buffered_rows += part.num_rows
            if self._buffered_rows > self.max_buffered_rows:
                self._shed()

    def flush(self) -> FlushResult:
        """Make every buffered row durable; rotate and publish the files that are due.

        Raises :class:`StoreWriteError` if something could not be written; the rows concerned
        stay buffered for the next call and an ``error`` event is queued.
        """
        with self._lock:
            return self._flush(final=False)

    def close(self) -> FlushResult:
        """Flush, publish every open file and release the data folder."""
        with self._lock:
            if self._closed:
                return FlushResult()
            result = self._flush(final=True)
            self._closed = True
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            log.info("store_closed", data_dir=str(self.data_dir), published=len(result.published))
            return result

    def snapshot_wanted(self) -> frozenset[tuple[str, ...]]:
        """Books (route values, e.g. ``(product, symbol)``) whose next file waits for a snapshot."""
        with self._lock:
            return frozenset(k[1] for k, f in self._open.items() if f.rotate_reason is not None)

    def due(self, now: float | None = None) -> bool:
        """True when ``flush_interval_s`` has passed since the last flush."""
        now = self._clock() if now is None else now
        return self.last_flush_at is None or now - self.last_flush_at >= self.flush_interval_s

    @property
    def buffered_rows(self) -> int:
        return self._buffered_rows

    @property
    def open_files(self) -> int:
        return len(self._open) + len(self._to_publish)

    def newest_trades(self) -> dict[tuple[str, str], tuple[int, tuple[str, ...]]]:
        """The newest published trade per (product, symbol): ``(timestamp_us, ids at it)``."""
        return newest_trades(self.data_dir)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def _split(
        self, schema: TableSchema, arrow: pa.Table
    ) -> list[tuple[tuple[tuple[str, ...], int], pa.Table]]:
        """Split rows by (route values, day), keeping their order within each group.

        Vectorized: every key becomes dictionary indices, combined into one group id per row;
        a stable sort on it and one ``take`` give each group as a zero-copy slice.
        """
        keys = schema.route_keys
        days = pc.divide(arrow.column("local_timestamp").cast(pa.int64()), 86_400_000_000)
        lo, hi = (v.as_py() for v in pc.min_max(days).values())
        encoded = [pc.dictionary_encode(arrow.column(k)).combine_chunks() for k in keys]
        if lo == hi and all(len(e.dictionary) == 1 for e in encoded):
            route = tuple(str(e.dictionary[0].as_py()) for e in encoded)
            return [((route, int(lo)), arrow)]
        gid = pc.subtract(days.combine_chunks(), lo)
        for e in encoded:
            gid = pc.add(pc.multiply(gid, len(e.dictionary)), e.indices.cast(pa.int64()))
        order = pc.sort_indices(gid)  # stable: rows keep their order within a group
        ordered = arrow.take(order)
        counts = pc.value_counts(gid.take(order))  # sorted input: groups in ascending id
        out = []
        start = 0
        for group in counts.to_pylist():
            g, n = group["values"], group["counts"]
            rest = g
            route_idx = []
            for e in reversed(encoded):
                rest, i = divmod(rest, len(e.dictionary))
                route_idx.append(str(e.dictionary[i].as_py()))
            route = tuple(reversed(route_idx))
            out.append(((route, int(lo + rest)), ordered.slice(start, n)))
            start += n
        return out

    def _shed(self) -> None:
        """Drop the oldest buffered chunks (never events) until under the bound; record it."""
        shed: dict[str, int] = {}
        for key in sorted(self._buffers, key=lambda k: -sum(t.num_rows for t in self._buffers[k])):
            if self._buffered_rows <= self.max_buffered_rows:
                break
            if key[0] == "events":
                continue
            chunks = self._buffers[key]
            while chunks and self._buffered_rows > self.max_buffered_rows:
                dropped = chunks.pop(0)
                self._buffered_rows -= dropped.num_rows
                shed[key[0]] = shed.get(key[0], 0) + dropped.num_rows
            if not chunks:
                del self._buffers[key]
        for table, count in shed.items():
            self.shed_rows[table] = self.shed_rows.get(table, 0) + count
            log.warning("store_shed", table=table, rows=count, bound=self.max_buffered_rows)
            self._event("shed", f"storage buffer full: dropped {count} {table} rows", count=count)

    def _event(self, kind: str, detail: str, count: int | None = None,
               product: str | None = None, symbol: str | None = None) -> None:
        cols: dict[str, list[Any]] = {
            "exchange": ["btse"], "kind": [kind], "product": [product], "symbol": [symbol],
            "topic": [None], "connection": [None], "expected_seq": [None], "received_seq": [None],
            "count": [count], "detail": [detail], "timestamp": [None],
            "local_timestamp": [self._now_us()],
        }
        arrow = to_arrow(self.schemas["events"], cols)
        day = layout.day_number(self._now_us())
        self._buffers.setdefault(("events", (), day), []).append(arrow)
        self._buffered_rows += 1

    def _flush(self, final: bool) -> FlushResult:
        result = FlushResult()
        errors: list[StoreWriteError] = []
        now = self._clock()
        for key in list(self._buffers):
            try:
                self._flush_route(key, now, result)
            except StoreWriteError as exc:
                errors.append(exc)
        for key, of in list(self._open.items()):
            if final or of.journal.broken:
                self._retire(key)
            else:
                self._check_rotation(key, of, now)
        still: list[_OpenFile] = []
        for of in self._to_publish:
            try:
                result.published.append(self._publish(of))
            except StoreWriteError as exc:
                errors.append(exc)
                still.append(of)
        self._to_publish = still
        self.last_flush_at = now
        result.snapshot_wanted = frozenset(k[1] for k, f in self._open.items() if f.rotate_reason)
        for table, n in result.rows.items():
            self.rows_written[table] = self.rows_written.get(table, 0) + n
        if errors:
            for err in errors:
                log.error("store_write_failed", path=err.path, error=err.message, errno=err.errno)
                self._event("error", json.dumps({"source": "storage", "path": err.path,
                                                 "error": err.message, "errno": err.errno}))
            raise errors[0]
        if result.published:
            log.info("store_flushed", rows=sum(result.rows.values()), published=len(result.published))
        return result

    def _flush_route(self, key: RouteKey, now: float, result: FlushResult) -> None:
        table_name = key[0]
        chunks = self._buffers[key]
        arrow = pa.concat_tables(chunks) if len(chunks) > 1 else chunks[0]
        head_col = SNAPSHOT_HEAD.get(table_name)
        of = self._open.get(key)
        if head_col is not None and of is not None:
            days = pc.divide(arrow.column("local_timestamp").cast(pa.int64()), 86_400_000_000)
            if of.rotate_reason is None and pc.max(days).as_py() > of.day:
                of.rotate_reason, of.rotate_since = "date", now
            if of.rotate_reason is not None:
                at = pc.index(arrow.column(head_col), True).as_py()
                if at >= 0:
                    if at > 0:
                        self._write(of, arrow.slice(0, at), key, result)
                        arrow = arrow.slice(at)
                        self._buffers[key] = [arrow]  # only the rest is still to write
                    self._retire(key)
                    of = None
        if of is None:
            of = self._new_file(key, arrow, now)
            if head_col is not None and not arrow.column(head_col)[0].as_py():
                self._event("error", json.dumps({"source": "storage", "file": of.stem,
                                                 "error": "book_changes file does not start with a snapshot"}),
                            product=key[1][0], symbol=key[1][1] if len(key[1]) > 1 else None)
        self._write(of, arrow, key, result)
        del self._buffers[key]

    def _write(self, of: _OpenFile, arrow: pa.Table, key: RouteKey, result: FlushResult) -> None:
        try:
            of.journal.append(arrow)
        except OSError as exc:
            self._buffers[key] = [arrow]
            self._buffered_rows = sum(t.num_rows for c in self._buffers.values() for t in c)
            raise files.write_error(of.journal.path, "appending to the journal", exc) from exc
        self._buffered_rows -= arrow.num_rows
        result.rows[key[0]] = result.rows.get(key[0], 0) + arrow.num_rows

    def _new_file(self, key: RouteKey, arrow: pa.Table, now: float) -> _OpenFile:
        schema = self.schemas[key[0]]
        first_us = int(arrow.column("local_timestamp").cast(pa.int64())[0].as_py())
        day = layout.day_number(first_us)
        partition = layout.make_partition(schema, key[1], layout.day_to_date(day))
        directory = self.data_dir / partition.relpath()
        stem = layout.new_stem(schema.name, first_us)
        try:
            journal = files.Journal(layout.journal_path(directory, stem), schema.arrow)
        except OSError as exc:
            raise files.write_error(directory, "creating a journal", exc) from exc
        of = _OpenFile(partition, directory, stem, journal, now, day)
        self._open[key] = of
        return of

    def _check_rotation(self, key: RouteKey, of: _OpenFile, now: float) -> None:
        age = now - of.opened_at
        reason = None
        if age >= self.rotate_interval_s:
            reason = "time"
        elif of.journal.size >= self.rotate_max_bytes:
            reason = "size"
        elif key[2] is None and layout.day_number(int(now * 1_000_000)) > of.day:
            reason = "date"
        if reason is None:
            return
        if key[0] not in SNAPSHOT_HEAD:
            self._retire(key)
            return
        if of.rotate_reason is None:
            of.rotate_reason, of.rotate_since = reason, now
            return
        waited = now - of.rotate_since
        if waited >= self.rotate_interval_s or of.journal.size >= 2 * self.rotate_max_bytes:
            log.warning("store_forced_rotation", file=of.stem, waited_s=round(waited, 1))
            self._event("error", json.dumps({"source": "storage", "file": of.stem,
                                             "error": "no snapshot arrived to start the next file; rotated anyway"}),
                        product=key[1][0], symbol=key[1][1] if len(key[1]) > 1 else None)
            self._retire(key)

    def _retire(self, key: RouteKey) -> None:
        of = self._open.pop(key)
        of.journal.close()
        if of.journal.rows:
            self._to_publish.append(of)
        else:
            of.journal.path.unlink(missing_ok=True)

    def _publish(self, of: _OpenFile) -> Path:
        contents = files.read_journal(of.journal.path)
        if contents.error is not None or contents.rows != of.journal.rows:
            raise StoreWriteError(str(of.journal.path), f"journal reads back {contents.rows} of "
                                  f"{of.journal.rows} rows ({contents.error or 'torn'})")
        schema = self.schemas[of.partition.table].arrow
        path = files.publish(of.directory, of.stem, schema, contents.batches, self.row_group_rows,
                             self.compression_level)
        try:
            of.journal.path.unlink()
            files.fsync_dir(of.directory)
        except OSError as exc:  # the Parquet file is complete; recovery drops the journal
            log.warning("store_journal_unlink_failed", path=str(of.journal.path), error=str(exc))
        log.info("store_published", table=of.partition.table, path=str(path), rows=contents.rows)
        return path

    def _write_anchors(self) -> None:
        for schema in self.schemas.values():
            path = layout.anchor_path(self.data_dir, schema)
            try:
                if path.exists() and pq.read_schema(str(path)).equals(schema.arrow):
                    continue
            except (OSError, pa.ArrowInvalid):
                pass
            files.atomic_write_parquet(path, schema.arrow.empty_table())


def newest_trades(data_dir: Path) -> dict[tuple[str, str], tuple[int, tuple[str, ...]]]:
    """The newest stored trade per (product, symbol): ``{(product, symbol): (timestamp_us,
    ids)}``, its exchange time (µs) and the ids of every trade stored at that time. What the
    trade de-duplication is seeded with at startup.

    Reads only the ``timestamp`` and ``id`` columns of the newest trades file(s) of each symbol
    (its newest date folder first, an older one when that holds no timestamp): cheap at
    startup. Rows without a timestamp are ignored.
    """
    out: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}
    root = Path(data_dir) / "trades"
    for sym_dir in sorted(root.glob("product=*/symbol=*")):
        product = sym_dir.parent.name.split("=", 1)[1]
        symbol = sym_dir.name.split("=", 1)[1]
        if layout.ANCHOR_VALUE in (product, symbol):
            continue
        for date_dir in sorted(sym_dir.glob("date=*"), reverse=True):
            starts = {
                p: layout.stem_start(layout.stem_of(p) or "") for p in date_dir.glob("*.parquet")
            }
            starts = {p: s for p, s in starts.items() if s}
            if not starts:
                continue
            newest = max(starts.values())  # files starting in the same microsecond: read them all
            table = pa.concat_tables(
                [
                    pq.read_table(str(p), columns=["timestamp", "id"])
                    for p, s in starts.items()
                    if s == newest
                ]
            )
            ts = table.column("timestamp").cast(pa.int64())
            top = pc.max(ts).as_py()
            if top is not None:
                ids = table.filter(pc.equal(ts, top)).column("id").to_pylist()
                out[(product, symbol)] = (int(top), tuple(sorted(set(ids))))
                break
    return out
