"""DuckDB access to the store: a connection with a view per table and the shipped macros.

``connect(data_dir)`` runs ``views.sql`` (the same file users ``.read`` from the duckdb CLI)
with ``btse_data_dir`` set; a table with no Parquet file at all (not even the zero-row schema
anchor the Store writes) gets an empty view with the columns of ``schemas/<table>.yaml``.
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

from collector.storage.schemas import TableSchema, load_schemas

VIEWS_SQL = Path(__file__).with_name("views.sql")
_VIEW = re.compile(r"CREATE OR REPLACE VIEW (\w+) AS", re.IGNORECASE)


def views_sql() -> str:
    return VIEWS_SQL.read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Split ``views.sql`` into statements (its statements end with ``;`` at a line end)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", body + "\n") if s.strip()]


def empty_view_sql(schema: TableSchema) -> str:
    """A view with the columns (and Hive keys) of ``schema`` and no rows."""
    cols = [f'CAST(NULL AS {c.duckdb_type}) AS "{c.name}"' for c in schema.columns]
    cols += [f'CAST(NULL AS DATE) AS "{k}"' for k in schema.partition_by if k == "date"]
    return f'CREATE OR REPLACE VIEW "{schema.name}" AS SELECT {", ".join(cols)} WHERE false'


def _has_files(data_dir: Path, table: str) -> bool:
    return next((data_dir / table).glob("**/*.parquet"), None) is not None


def connect(
    data_dir: Path | str,
    con: duckdb.DuckDBPyConnection | None = None,
    schemas: Mapping[str, TableSchema] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection (new, in-memory, unless given) with the views and macros."""
    root = Path(data_dir).resolve()
    tables = schemas if schemas is not None else load_schemas()
    con = con if con is not None else duckdb.connect()
    con.execute("SET VARIABLE btse_data_dir = ?", [str(root)])
    for statement in split_statements(views_sql()):
        match = _VIEW.match(statement)
        if match and match.group(1) in tables and not _has_files(root, match.group(1)):
            con.execute(empty_view_sql(tables[match.group(1)]))
        else:
            con.execute(statement)
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
