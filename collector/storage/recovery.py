"""Startup recovery of what a crash left behind: journals and temp files.

Run before writing (``Store`` does it while holding the data-folder lock; never run it on a
folder a live collector is writing). For every leftover under ``<data_dir>/<table>/``:

* ``.<stem>.parquet.tmp`` — a publish that did not finish. If the journal ``.<stem>.journal``
  is still there, or ``<stem>.parquet`` already exists, the temp file is deleted (the journal
  is republished below). Otherwise it is published if it reads back completely, else
  quarantined.
* ``.<stem>.journal`` — an open file at the time of the crash. If ``<stem>.parquet`` exists the
  publish had finished and the journal is deleted. Otherwise every complete record batch is
  published as ``<stem>.parquet`` (a torn last batch — rows whose flush never returned — is
  cut off) and the journal deleted. A journal whose header cannot be read is quarantined.

Quarantined files move to ``<data_dir>/_quarantine/<same path>.<time>.quarantined``. Each
published or quarantined file becomes an ``events`` row (kind ``recovered`` / ``quarantined``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from collector.storage import files, layout
from collector.storage.schemas import TableSchema, load_schemas

log = structlog.get_logger()


@dataclass(frozen=True)
class RecoveryItem:
    path: Path  # the leftover that was found
    action: str  # published | discarded | quarantined
    table: str
    rows: int
    detail: str
    result: Path | None = None  # the published file or the quarantined copy

    def partition(self) -> dict[str, str]:
        return dict(p.split("=", 1) for p in self.path.parent.parts if "=" in p)


@dataclass
class RecoveryReport:
    items: list[RecoveryItem] = field(default_factory=list)

    def by_action(self, action: str) -> list[RecoveryItem]:
        return [i for i in self.items if i.action == action]

    def event_columns(self, now_us: int) -> dict[str, list[Any]]:
        """``events`` rows (kind recovered/quarantined) for the published and quarantined items."""
        cols: dict[str, list[Any]] = {k: [] for k in (
            "exchange", "kind", "product", "symbol", "topic", "connection", "expected_seq",
            "received_seq", "count", "detail", "timestamp", "local_timestamp")}
        for item in self.items:
            if item.action == "discarded":
                continue
            part = item.partition()
            detail = {"source": "storage", "table": item.table, "file": str(item.path),
                      "result": str(item.result) if item.result else None, "detail": item.detail}
            values: dict[str, Any] = {
                "exchange": "btse", "kind": "recovered" if item.action == "published" else "quarantined",
                "product": part.get("product"), "symbol": part.get("symbol"), "topic": None,
                "connection": None, "expected_seq": None, "received_seq": None,
                "count": item.rows, "detail": json.dumps(detail), "timestamp": None,
                "local_timestamp": now_us,
            }
            for k, v in values.items():
                cols[k].append(v)
        return cols


def _quarantine(data_dir: Path, path: Path) -> Path:
    dest = layout.quarantine_path(data_dir, path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    files.fsync_dir(path.parent)
    return dest


def _recover_tmp(data_dir: Path, table: str, path: Path, row_group_rows: int) -> RecoveryItem:
    stem = layout.stem_of(path)
    if stem is None:  # e.g. an anchor's temp file: always rewritten, nothing to keep
        path.unlink()
        return RecoveryItem(path, "discarded", table, 0, "temp file of a schema anchor")
    if layout.journal_path(path.parent, stem).exists():
        path.unlink()
        return RecoveryItem(path, "discarded", table, 0, "unfinished publish; the journal is republished")
    final = layout.final_path(path.parent, stem)
    if final.exists():
        path.unlink()
        return RecoveryItem(path, "discarded", table, 0, "already published")
    try:
        data = pq.read_table(str(path))
        data.validate(full=True)
    except (pa.ArrowInvalid, OSError) as exc:
        dest = _quarantine(data_dir, path)
        return RecoveryItem(path, "quarantined", table, 0, f"unreadable temp file: {exc}", dest)
    files._replace(path, final)
    files.fsync_dir(path.parent)
    return RecoveryItem(path, "published", table, data.num_rows, "complete temp file published", final)


def _recover_journal(data_dir: Path, table: str, path: Path, row_group_rows: int) -> RecoveryItem:
    stem = layout.stem_of(path)
    if stem is None:
        dest = _quarantine(data_dir, path)
        return RecoveryItem(path, "quarantined", table, 0, "journal with an unexpected name", dest)
    final = layout.final_path(path.parent, stem)
    if final.exists():
        path.unlink()
        files.fsync_dir(path.parent)
        return RecoveryItem(path, "discarded", table, 0, "journal of a file already published")
    contents = files.read_journal(path)
    if contents.error is not None or contents.schema is None:
        dest = _quarantine(data_dir, path)
        return RecoveryItem(path, "quarantined", table, 0, contents.error or "no schema", dest)
    if contents.rows == 0:
        path.unlink()
        files.fsync_dir(path.parent)
        return RecoveryItem(path, "discarded", table, 0, "empty journal")
    published = files.publish(path.parent, stem, contents.schema, contents.batches, row_group_rows)
    path.unlink()
    files.fsync_dir(path.parent)
    detail = "journal published" + (" (torn last batch cut off)" if contents.torn_tail else "")
    return RecoveryItem(path, "published", table, contents.rows, detail, published)


def recover(
    data_dir: Path | str,
    schemas: Mapping[str, TableSchema] | None = None,
    row_group_rows: int = 500_000,
) -> RecoveryReport:
    """Publish or quarantine every journal and temp file left in ``data_dir``; report each."""
    root = Path(data_dir)
    tables = schemas if schemas is not None else load_schemas()
    report = RecoveryReport()
    for table in tables:
        table_dir = root / table
        if not table_dir.is_dir():
            continue
        leftovers = sorted(table_dir.rglob(".*"))
        # Temp files first: their journal, if any, decides what to keep.
        ordered = [p for p in leftovers if p.name.endswith(layout.TMP_SUFFIX)] + [
            p for p in leftovers if p.name.endswith(layout.JOURNAL_SUFFIX)
        ]
        for path in ordered:
            try:
                if path.name.endswith(layout.TMP_SUFFIX):
                    item = _recover_tmp(root, table, path, row_group_rows)
                else:
                    item = _recover_journal(root, table, path, row_group_rows)
            except OSError as exc:
                raise files.write_error(path, "recovering", exc) from exc
            report.items.append(item)
            log.warning("store_recovered", action=item.action, path=str(path), rows=item.rows,
                        detail=item.detail)
    return report
