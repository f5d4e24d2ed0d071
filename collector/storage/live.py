"""Live rows: the open journals of a running store, read safely for queries.

A journal (``.<stem>.journal``, see :mod:`collector.storage.writer`) holds every row flushed
since its file opened; it becomes ``<stem>.parquet`` only at rotation. :func:`snapshot` reads
the journals of one table *without disturbing the writer* (read-only memory map, no lock, no
write) and returns what :mod:`collector.storage.query` needs to show those rows next to the
published files:

* only complete record batches are read; a torn last message (a flush being written right
  now, or cut by a crash) ends the read, so a concurrent append is never half-visible;
* a journal that disappears between listing and opening was just published: it is skipped,
  and its ``<stem>.parquet`` (written, fsynced and renamed *before* the journal is deleted)
  is read by the Parquet scan instead;
* a journal whose ``<stem>.parquet`` already exists (the window between the rename and the
  unlink, or a crash in it) is skipped the same way;
* every journal that *is* read names its future ``<stem>.parquet`` in
  :attr:`LiveTable.shadowed`: the Parquet scan must exclude those paths, so a journal
  published after the snapshot is still counted once (from the snapshot), never twice.

The batches are zero-copy views of the memory map (the OS pages in only the columns a query
touches). A journal deleted after it was mapped stays readable until the batches are freed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import structlog

from collector.errors import UnsafePathError
from collector.storage import layout
from collector.storage.schemas import TableSchema

log = structlog.get_logger()

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class LiveJournal:
    """The complete record batches of one open journal, and its Hive partition values."""

    path: Path
    partition: dict[str, str]  # key -> value from the folder names (date as YYYY-MM-DD)
    table: pa.Table
    torn_tail: bool  # bytes after the last complete message were ignored


@dataclass
class LiveTable:
    """A snapshot of the open journals of one table."""

    name: str
    journals: list[LiveJournal] = field(default_factory=list)
    shadowed: list[Path] = field(default_factory=list)  # <stem>.parquet of each journal read
    skipped: int = 0  # journals already published, vanished, or unreadable

    @property
    def rows(self) -> int:
        return sum(j.table.num_rows for j in self.journals)


def partition_values(table_dir: Path, directory: Path, schema: TableSchema) -> dict[str, str] | None:
    """The ``key=value`` folders between ``table_dir`` and ``directory``, if they are ours."""
    try:
        parts = directory.relative_to(table_dir).parts
    except ValueError:
        return None
    if len(parts) != len(schema.partition_by):
        return None
    values: dict[str, str] = {}
    for key, part in zip(schema.partition_by, parts, strict=True):
        name, sep, value = part.partition("=")
        if not sep or name != key:
            return None
        if key == "date":
            if _DATE.fullmatch(value) is None:
                return None
        else:
            try:
                layout.safe_name(value, key)
            except UnsafePathError:
                return None
        values[key] = value
    return values


def read_complete_batches(path: Path, schema: pa.Schema) -> tuple[list[pa.RecordBatch], bool] | None:
    """Every complete record batch of a journal being appended; None if it is gone or foreign.

    The returned flag is True when a torn tail was ignored. Batches are structurally
    validated, the last one fully (it is the one a concurrent append or a crash can cut).
    """
    try:
        source = pa.memory_map(str(path), "r")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("live_journal_unreadable", path=str(path), error=str(exc))
        return None
    try:
        reader = pa.ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError):
        return [], True  # header not written yet (or cut): nothing to read
    if not reader.schema.equals(schema):
        log.warning("live_journal_schema_mismatch", path=str(path))
        return None
    batches: list[pa.RecordBatch] = []
    torn = False
    while True:
        try:
            batch = reader.read_next_batch()
            batch.validate()
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):
            torn = True
            break
        batches.append(batch)
    while batches:
        try:
            batches[-1].validate(full=True)
            break
        except pa.ArrowInvalid:
            batches.pop()
            torn = True
    return batches, torn


def journal_paths(table_dir: Path) -> list[Path]:
    """Every ``.*.journal`` under ``table_dir``, sorted (``os.walk``: ~1.6x faster than glob)."""
    found = [
        Path(folder, name)
        for folder, _, names in os.walk(table_dir)
        for name in names
        if name.startswith(".") and name.endswith(layout.JOURNAL_SUFFIX)
    ]
    return sorted(found)


def snapshot(data_dir: Path, schema: TableSchema) -> LiveTable:
    """Read the open journals of ``schema``'s table under ``data_dir`` (see the module doc)."""
    table_dir = data_dir / schema.name
    live = LiveTable(schema.name)
    for path in journal_paths(table_dir):
        stem = layout.stem_of(path)
        partition = partition_values(table_dir, path.parent, schema)
        if stem is None or partition is None:
            live.skipped += 1
            continue
        final = layout.final_path(path.parent, stem)
        if final.exists():  # published, journal not deleted yet: the Parquet scan has the rows
            live.skipped += 1
            continue
        read = read_complete_batches(path, schema.arrow)
        if read is None:  # vanished: it was just published, the Parquet scan has the rows
            live.skipped += 1
            continue
        batches, torn = read
        # From here on the journal's rows come from this snapshot, even if it is published
        # before the query runs: the Parquet scan must not read its <stem>.parquet too.
        live.shadowed.append(final)
        if batches:
            live.journals.append(
                LiveJournal(path, partition, pa.Table.from_batches(batches, schema.arrow), torn)
            )
    return live
