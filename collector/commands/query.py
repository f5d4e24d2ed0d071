"""``btse-collector query [--data-dir DIR] [--format table|csv|json] [--published-only] "SQL" | --file script.sql``.

Opens an in-memory DuckDB with a view per table of the store and the shipped macros
(``collector/storage/views.sql``) and prints the result of the last statement. The views
include the rows a running collector has flushed but not yet rotated into Parquet (its open
journals, read once at start); ``--published-only`` shows published files only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from collector.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

HELP = "run SQL over the Parquet store with DuckDB (views per table + macros)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("BTSE_COLLECTOR_DATA_DIR", "data")),
        metavar="DIR", help="the store folder (default: $BTSE_COLLECTOR_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--format", choices=["table", "csv", "json"], default="table",
        help="table (aligned, for people; default), csv or json (for scripts)",
    )
    parser.add_argument(
        "--published-only", action="store_true",
        help="only rows of published Parquet files (reproducible); by default the rows flushed "
             "to the open journals of a running collector are included",
    )
    parser.add_argument("--file", type=Path, metavar="FILE", help="run the SQL statements of FILE")
    parser.add_argument("--print-views", action="store_true",
                        help="print the views.sql the views come from (for the duckdb CLI) and exit")
    parser.add_argument("sql", nargs="?", help="SQL to run, e.g. \"SELECT count(*) FROM trades\"")


def main(args: argparse.Namespace) -> int:
    from collector.storage import query

    if args.print_views:
        sys.stdout.write(query.views_sql())
        return EXIT_OK
    if (args.sql is None) == (args.file is None):
        print("btse-collector query: give either SQL or --file FILE", file=sys.stderr)
        return EXIT_USAGE
    if args.file is not None:
        try:
            sql = args.file.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"btse-collector query: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sql = args.sql
    if not args.data_dir.is_dir():
        print(f"btse-collector query: data folder {args.data_dir} does not exist", file=sys.stderr)
        return EXIT_FAILURE
    import duckdb

    try:
        con = query.connect(args.data_dir, live=not args.published_only)
        columns, rows = query.run(con, sql)
    except duckdb.Error as exc:
        print(f"btse-collector query: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.write(query.format_rows(columns, rows, args.format))
    return EXIT_OK
