"""Durable file operations shared by the writer and recovery.

Two file kinds:

* **journal** (``.<stem>.journal``): an Arrow IPC *stream* — the schema message, then one
  record-batch message per flush, appended with ``os.write`` and fsynced. It is append-only,
  so after ``kill -9`` every complete message is still readable; a torn last message is cut
  off by :func:`read_journal`. Journals are never matched by ``*.parquet`` globs.
* **published Parquet** (``<stem>.parquet``): written from a journal to ``.<stem>.parquet.tmp``
  (zstd, large row groups), fsynced, renamed with ``os.replace`` and the folder fsynced — a
  reader sees either no file or the complete file.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from collector.errors import StoreWriteError
from collector.storage import layout

# Indirections so tests can simulate a full disk without touching the real os module.
_write = os.write
_replace = os.replace


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_error(path: Path, action: str, exc: OSError) -> StoreWriteError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno_mod.ENOSPC:
        reason = "disk full (ENOSPC)"
    return StoreWriteError(str(path), f"{action} failed: {reason}", exc.errno)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        view = view[written:]


class Journal:
    """An open, append-only journal file for one (table, partition)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.size = 0  # bytes known durable and complete
        self.rows = 0
        self.broken = False  # a failed append could not be cut off: start a new file
        try:
            self._append_bytes(schema.serialize())
            os.fsync(self.fd)
            fsync_dir(path.parent)
        except OSError:
            os.close(self.fd)
            path.unlink(missing_ok=True)
            raise

    def _append_bytes(self, data: pa.Buffer | bytes) -> None:
        write_all(self.fd, memoryview(data))
        self.size += len(data)

    def append(self, table: pa.Table) -> None:
        """Append ``table`` as record-batch messages and fsync: durable when this returns."""
        start_size = self.size
        try:
            for batch in table.to_batches():
                self._append_bytes(batch.serialize())
            os.fsync(self.fd)
        except OSError:
            # Cut the torn tail so the journal stays a valid stream for the next attempt.
            try:
                os.ftruncate(self.fd, start_size)
                os.lseek(self.fd, start_size, os.SEEK_SET)
            except OSError:
                self.broken = True
            self.size = start_size
            raise
        self.rows += table.num_rows

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class JournalContents:
    schema: pa.Schema | None
    batches: list[pa.RecordBatch]
    rows: int
    torn_tail: bool  # bytes after the last complete message were cut off
    error: str | None  # why the journal could not be read at all (schema unreadable)


def read_journal(path: Path) -> JournalContents:
    """Read every complete record batch of a journal; a torn last message is dropped."""
    batches: list[pa.RecordBatch] = []
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path), "r"))
    except (pa.ArrowInvalid, OSError) as exc:
        return JournalContents(None, [], 0, True, f"unreadable journal header: {exc}")
    torn = False
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):
            torn = True
            break
        try:
            batch.validate(full=True)
        except pa.ArrowInvalid:
            torn = True
            break
        batches.append(batch)
    return JournalContents(reader.schema, batches, sum(b.num_rows for b in batches), torn, None)


#: Long, unique text columns (the raw frames): no dictionary (it never fits and is dropped
#: after the attempt) and no min/max statistics (useless for pruning, costly on long values).
PLAIN_COLUMNS = frozenset({"frame"})


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: the short strings (exchange, symbol, side, ...).

    Numbers and timestamps are mostly distinct: hashing them costs ~30% of the encode time
    and zstd on the plain values gives files as small (measured on book_changes).
    """
    return [f.name for f in schema if pa.types.is_string(f.type) and f.name not in PLAIN_COLUMNS]


def _row_groups(batches: list[pa.RecordBatch], rows_per_group: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows_per_group:
            yield pa.Table.from_batches(pending)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def write_parquet(
    path: Path,
    schema: pa.Schema,
    batches: list[pa.RecordBatch],
    row_group_rows: int,
    compression_level: int | None = None,
) -> None:
    """Write ``batches`` to ``path`` (zstd, row groups of ``row_group_rows``) and fsync it."""
    with pq.ParquetWriter(
        str(path), schema, compression="zstd", compression_level=compression_level,
        use_dictionary=dictionary_columns(schema),
        write_statistics=[f.name for f in schema if f.name not in PLAIN_COLUMNS],
    ) as writer:
        for table in _row_groups(batches, row_group_rows):
            writer.write_table(table.cast(schema), row_group_size=row_group_rows)
    fsync_file(path)


def publish(
    directory: Path,
    stem: str,
    schema: pa.Schema,
    batches: list[pa.RecordBatch],
    row_group_rows: int,
    compression_level: int | None = None,
) -> Path:
    """Atomically publish ``batches`` as ``<stem>.parquet`` via a temp name; return its path.

    On any failure the temp file is removed and :class:`StoreWriteError` raised; an existing
    published file is never touched.
    """
    tmp = layout.tmp_path(directory, stem)
    final = layout.final_path(directory, stem)
    try:
        write_parquet(tmp, schema, batches, row_group_rows, compression_level)
        _replace(tmp, final)
        fsync_dir(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(final, "publishing", exc) from exc
    return final


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    """Write a small table to ``path`` through a temp name + fsync + rename (anchors)."""
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pq.write_table(table, str(tmp), compression="zstd")
        fsync_file(tmp)
        _replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, "writing", exc) from exc
