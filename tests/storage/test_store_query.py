from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from storage_helpers import T0_US, Clock, book, events, quotes, trades

from collector import cli
from collector.storage import Store, load_schemas
from collector.storage.query import connect, run, split_statements, views_sql

S = 1_000_000  # one second in µs


def ts(offset_us: int) -> str:
    """SQL timestamp literal T0 + offset."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp((T0_US + offset_us) / S, tz=UTC).isoformat()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    t = T0_US
    with Store(tmp_path, rotate_interval_s=10, clock=Clock()) as store:
        store.append("book_changes", book([
            (t, True, "bid", 99.0, 1.0, 100), (t, True, "bid", 98.5, 2.0, 100),
            (t, True, "ask", 101.0, 1.5, 100), (t, True, "ask", 102.0, 3.0, 100),
            (t + 1 * S, False, "bid", 99.5, 0.7, 101),      # new best bid
            (t + 2 * S, False, "ask", 101.0, 0.0, 102),     # best ask removed
            (t + 3 * S, False, "bid", 98.5, 4.0, 103),
        ]))
        store.flush()
        # a resync later: new snapshot replaces everything
        store.append("book_changes", book([
            (t + 10 * S, True, "bid", 90.0, 1.0, 500), (t + 10 * S, True, "ask", 91.0, 1.0, 500),
            (t + 11 * S, False, "ask", 91.5, 2.0, 501),
        ]))
        store.append("book_changes", book([(t, True, "bid", 1.0, 1.0, 1)], symbol="ETH-USD"))
        store.append("quotes", quotes([(t, 99.0, 1.0, 101.0, 1.5), (t + 1 * S, 99.5, 0.7, 101.0, 1.5),
                                       (t + 2 * S, 99.5, 0.7, 102.0, 3.0)]))
        store.append("trades", trades([1, 2, 3], ts=[t + S // 2, t + 3 * S // 2, t + 5 * S]))
        store.append("events", events([
            (t + 4 * S, "gap", "BTC-USD", "spot_oss#0", "expected 103 got 105"),
            (t + 10 * S, "synced", "BTC-USD", "spot_oss#0", None),
            (t + 12 * S, "disconnected", None, "spot_oss#0", "code 1006"),
            (t + 15 * S, "connected", None, "spot_oss#0", None),
        ]))
    return tmp_path


def book_at(con, at_us: int, symbol: str = "BTC-USD") -> list[tuple]:
    return run(con, f"SELECT side, level, price, amount FROM book_at('spot', '{symbol}', '{ts(at_us)}')")[1]


def test_book_at_rebuilds_the_book(store_dir: Path) -> None:
    con = connect(store_dir)
    assert book_at(con, -1) == []  # before any snapshot
    assert book_at(con, 0) == [("bid", 0, 99.0, 1.0), ("bid", 1, 98.5, 2.0),
                               ("ask", 0, 101.0, 1.5), ("ask", 1, 102.0, 3.0)]
    assert book_at(con, 2 * S) == [("bid", 0, 99.5, 0.7), ("bid", 1, 99.0, 1.0), ("bid", 2, 98.5, 2.0),
                                   ("ask", 0, 102.0, 3.0)]
    assert book_at(con, 9 * S) == [("bid", 0, 99.5, 0.7), ("bid", 1, 99.0, 1.0), ("bid", 2, 98.5, 4.0),
                                   ("ask", 0, 102.0, 3.0)]
    assert book_at(con, 20 * S) == [("bid", 0, 90.0, 1.0), ("ask", 0, 91.0, 1.0), ("ask", 1, 91.5, 2.0)]
    assert book_at(con, 20 * S, "ETH-USD") == [("bid", 0, 1.0, 1.0)]


def test_trades_with_prevailing_quote(store_dir: Path) -> None:
    con = connect(store_dir)
    _, rows = run(con, f"SELECT id, bid_price, ask_price, ask_amount FROM trades_with_quote("
                       f"'spot', 'BTC-USD', '{ts(0)}', '{ts(60 * S)}')")
    assert rows == [("1", 99.0, 101.0, 1.5), ("2", 99.5, 101.0, 1.5), ("3", 99.5, 102.0, 3.0)]


def test_gaps_and_coverage(store_dir: Path) -> None:
    con = connect(store_dir)
    _, rows = run(con, f"SELECT kind, symbol, connection, epoch(duration) FROM gaps('{ts(0)}', '{ts(60 * S)}')")
    assert rows == [("gap", "BTC-USD", "spot_oss#0", 6.0), ("disconnected", None, "spot_oss#0", 3.0)]
    _, rows = run(con, f"SELECT symbol, rows, snapshots, holes FROM book_coverage('{ts(0)}', '{ts(60 * S)}')")
    assert rows == [("BTC-USD", 10, 2, 1), ("ETH-USD", 1, 1, 0)]


def test_views_exist_for_empty_tables_with_schema_columns(store_dir: Path, tmp_path_factory) -> None:
    schemas = load_schemas()
    for root in (store_dir, tmp_path_factory.mktemp("never_written")):
        con = connect(root)
        for name, schema in schemas.items():
            cols, _ = run(con, f"DESCRIBE {name}")
            described = [r[0] for r in run(con, f"DESCRIBE {name}")[1]]
            assert cols and set(schema.column_names) <= set(described), name
            assert "date" in described
        assert run(con, "SELECT count(*) FROM otc_quotes")[1] == [(0,)]
    # the anchors keep the types exact even with no data
    con = connect(store_dir)
    types = dict((r[0], r[1]) for r in run(con, "DESCRIBE otc_quotes")[1])
    assert types["local_timestamp"] == "TIMESTAMP WITH TIME ZONE" and types["quantity"] == "DOUBLE"


def test_views_sql_covers_every_table_with_its_partition_keys() -> None:
    sql = views_sql()
    statements = split_statements(sql)
    for name, schema in load_schemas().items():
        [view] = [s for s in statements if s.startswith(f"CREATE OR REPLACE VIEW {name} AS")]
        assert f"'/{name}/**/*.parquet'" in view
        for key in schema.partition_by:
            assert f"'{key}': {'DATE' if key == 'date' else 'VARCHAR'}" in view


def test_partition_pruning_by_symbol(store_dir: Path) -> None:
    con = connect(store_dir)
    plan = run(con, "EXPLAIN ANALYZE SELECT count(*) FROM book_changes WHERE symbol = 'ETH-USD'")[1]
    text = "\n".join(str(v) for row in plan for v in row)
    assert "Scanning Files: 1/" in text


def test_query_cli_formats(store_dir: Path, capsys) -> None:
    sql = "SELECT id, price, local_timestamp FROM trades ORDER BY id"
    assert cli.main(["query", "--data-dir", str(store_dir), sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split("│")[0].strip() == "id" and table[-1] == "(3 rows)"
    assert "100.01" in table[2]
    assert cli.main(["query", "--data-dir", str(store_dir), "--format", "csv", sql]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["id", "price", "local_timestamp"] and rows[1][:2] == ["1", "100.01"]
    assert cli.main(["query", "--data-dir", str(store_dir), "--format", "json", sql]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[2] == {"id": "3", "price": 100.03, "local_timestamp": ts(5 * S)}


def test_query_cli_file_and_errors(store_dir: Path, tmp_path_factory, capsys) -> None:
    script = tmp_path_factory.mktemp("sql") / "q.sql"
    script.write_text("CREATE TEMP TABLE x AS SELECT count(*) AS n FROM trades;\nSELECT n * 2 AS doubled FROM x;\n")
    assert cli.main(["query", "--data-dir", str(store_dir), "--format", "csv", "--file", str(script)]) == 0
    assert capsys.readouterr().out == "doubled\n6\n"
    assert cli.main(["query", "--data-dir", str(store_dir), "SELECT nope FROM trades"]) == 1
    assert "nope" in capsys.readouterr().err
    assert cli.main(["query", "--data-dir", str(store_dir / "missing"), "SELECT 1"]) == 1
    assert cli.main(["query", "--data-dir", str(store_dir)]) == 2
    assert cli.main(["query", "--print-views"]) == 0
    assert "CREATE OR REPLACE MACRO book_at" in capsys.readouterr().out


def test_views_sql_works_as_plain_sql_from_any_duckdb(store_dir: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET VARIABLE btse_data_dir = '{store_dir}'")
    con.execute(views_sql())  # what `.read views.sql` does in the duckdb CLI
    assert con.sql("SELECT count(*) FROM trades").fetchall() == [(3,)]
    assert con.sql(f"SELECT count(*) FROM book_at('spot', 'BTC-USD', '{ts(20 * S)}')").fetchall() == [(3,)]
