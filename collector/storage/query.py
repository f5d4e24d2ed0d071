"""DuckDB access to the store: a connection with a view per table and the shipped macros.

``connect(data_dir)`` runs ``views.sql`` (the same file users ``.read`` from the duckdb CLI)
with ``btse_data_dir`` set; a table with no Parquet file at all (not even the zero-row schema
anchor the Store writes) gets an empty view with the columns of ``schemas/<table>.yaml``.

By default (``live=True``) each view also shows the rows of the open journals — flushed by a
running collector but not yet rotated into Parquet — read once, at ``connect()``, by
:mod:`collector.storage.live`. Each journal is one ``UNION ALL BY NAME`` branch whose Hive
columns (``date``, ``product``, ``symbol``, ``server``) are constants taken from its folder, so
a filter on them drops the whole branch, as it skips Parquet folders. The Parquet scan of a
live view excludes the ``<stem>.parquet`` of every journal read, so a journal published after
``connect()`` is still counted exactly once. The journal rows are a snapshot: call
``connect(data_dir, con)`` again to refresh them. ``live=False`` gives the views of
``views.sql`` unchanged: published files only, reproducible.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from collector.storage import live as live_rows
from collector.storage.schemas import TableSchema, load_schemas

VIEWS_SQL = Path(__file__).with_name("views.sql")
_VIEW = re.compile(r"CREATE OR REPLACE VIEW (\w+) AS", re.IGNORECASE)
_HIVE = re.compile(r"hive_partitioning = true,", re.IGNORECASE)
#: The virtual column naming each Parquet file of a live view (dropped from the result).
FILE_COLUMN = "_btse_file"
#: Prefix of the Arrow tables registered on the connection for the journals.
LIVE_PREFIX = "_btse_live_"


def views_sql() -> str:
    return VIEWS_SQL.read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Split ``views.sql`` into statements (its statements end with ``;`` at a line end)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", body + "\n") if s.strip()]


def empty_select(schema: TableSchema) -> str:
    """A query with the columns (and Hive keys) of ``schema`` and no rows."""
    cols = [f'CAST(NULL AS {c.duckdb_type}) AS "{c.name}"' for c in schema.columns]
    cols += [f'CAST(NULL AS DATE) AS "{k}"' for k in schema.partition_by if k == "date"]
    return f'SELECT {", ".join(cols)} WHERE false'


def empty_view_sql(schema: TableSchema) -> str:
    """A view with the columns (and Hive keys) of ``schema`` and no rows."""
    return f'CREATE OR REPLACE VIEW "{schema.name}" AS {empty_select(schema)}'


def _has_files(data_dir: Path, table: str) -> bool:
    return next((data_dir / table).glob("**/*.parquet"), None) is not None


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def live_view_sql(scan: str | None, schema: TableSchema, live: live_rows.LiveTable,
                  names: Sequence[str]) -> str:
    """A view of ``schema``'s table: the Parquet ``scan`` (the body of its view in ``views.sql``,
    None when the table has no file) plus one branch per journal of ``live``.

    ``names[i]`` is the name under which ``live.journals[i].table`` is registered.
    """
    if scan is not None:
        scan = _HIVE.sub(f"hive_partitioning = true, filename = '{FILE_COLUMN}',", scan, count=1)
        if FILE_COLUMN not in scan:
            raise ValueError(f"views.sql: the view {schema.name} has no 'hive_partitioning = true,'")
        where = ""
        if live.shadowed:
            where = f" WHERE {FILE_COLUMN} NOT IN ({', '.join(_literal(str(p)) for p in live.shadowed)})"
        parts = [f"SELECT * EXCLUDE ({FILE_COLUMN}) FROM ({scan}){where}"]
    else:
        parts = [empty_select(schema)]
    columns = set(schema.column_names)
    for journal, name in zip(live.journals, names, strict=True):
        replace = [f'CAST({_literal(v)} AS VARCHAR) AS "{k}"' for k, v in journal.partition.items()
                   if k in columns]
        extra = [f'DATE {_literal(v)} AS "{k}"' if k == "date" else f'CAST({_literal(v)} AS VARCHAR) AS "{k}"'
                 for k, v in journal.partition.items() if k not in columns]
        select = "SELECT *" + (f" REPLACE ({', '.join(replace)})" if replace else "")
        parts.append(f"{select}{''.join(', ' + e for e in extra)} FROM {name}")
    return f'CREATE OR REPLACE VIEW "{schema.name}" AS ' + "\nUNION ALL BY NAME\n".join(parts)


def connect(
    data_dir: Path | str,
    con: duckdb.DuckDBPyConnection | None = None,
    schemas: Mapping[str, TableSchema] | None = None,
    *,
    live: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection (new, in-memory, unless given) with the views and macros.

    ``live`` (default) adds the rows of the open journals, as of this call (see the module
    docstring); ``live=False`` shows published Parquet files only. Calling it again on the
    same ``con`` refreshes the journal rows.
    """
    root = Path(data_dir).resolve()
    tables = schemas if schemas is not None else load_schemas()
    con = con if con is not None else duckdb.connect()
    con.execute("SET VARIABLE btse_data_dir = ?", [str(root)])
    for (name,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND starts_with(view_name, ?)", [LIVE_PREFIX]
    ).fetchall():
        con.unregister(name)
    count = 0
    for statement in split_statements(views_sql()):
        match = _VIEW.match(statement)
        if not match or match.group(1) not in tables:
            con.execute(statement)
            continue
        schema = tables[match.group(1)]
        snap = live_rows.snapshot(root, schema) if live else live_rows.LiveTable(schema.name)
        has_files = _has_files(root, schema.name)  # after the snapshot: a journal published meanwhile
        if not snap.journals and not snap.shadowed:
            con.execute(statement if has_files else empty_view_sql(schema))
            continue
        names = []
        for journal in snap.journals:
            names.append(f"{LIVE_PREFIX}{count}")
            con.register(names[-1], journal.table)
            count += 1
        scan = statement[match.end():].strip() if has_files else None
        con.execute(live_view_sql(scan, schema, snap, names))
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Execute one or more statements; return the columns and rows of the last one."""
    rel = con.sql(sql)
    if rel is None:
        return [], []
    table = rel.to_arrow_table()  # via Arrow: TIMESTAMPTZ needs no pytz
    return list(table.column_names), [tuple(r.values()) for r in table.to_pylist()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, pa.MonthDayNano):
        return _cell(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, pa.MonthDayNano):
        months, days, nanos = value
        secs = dt.timedelta(microseconds=nanos // 1000)
        head = f"{months} months " if months else ""
        return f"{head}{days} days {secs}" if days or months else str(secs)
    return str(value)


def format_rows(columns: Sequence[str], rows: Sequence[tuple[Any, ...]], fmt: str) -> str:
    """Render a result as ``table`` (aligned, for people), ``csv`` or ``json`` (for scripts)."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else _cell(v) for v in row])
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([{c: _jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows],
                          indent=1) + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (table, csv, json)")
    if not columns:
        return ""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in rows) and bool(rows)
               for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return " │ ".join(v.rjust(w) if numeric[i] else v.ljust(w)
                          for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    out = [line(list(columns)), "─┼─".join("─" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out) + "\n"
