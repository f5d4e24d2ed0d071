"""Rows flushed to the open journals are visible to queries before their file rotates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from storage_helpers import T0_S, T0_US, Clock, book, events, quotes, trades

from collector import cli
from collector.storage import Store, files, layout, live
from collector.storage.query import LIVE_PREFIX, connect, run
from collector.storage.schemas import load_schemas
from collector.storage.writer import to_arrow

SCHEMAS = load_schemas()
TRADES = SCHEMAS["trades"]
S = 1_000_000


def part(symbol: str = "BTC-USD", date: str = "2023-11-14") -> Path:
    return Path(f"trades/product=spot/symbol={symbol}/date={date}")


def make_journal(root: Path, batches: list[list[int]], symbol: str = "BTC-USD",
                 stem: str = "trades-20231114T221320.000000Z-0123456789ab") -> files.Journal:
    journal = files.Journal(layout.journal_path(root / part(symbol), stem), TRADES.arrow)
    for ids in batches:
        journal.append(to_arrow(TRADES, trades(ids, symbol=symbol)))
    return journal  # left open, like the running collector's


def publish(journal: files.Journal) -> Path:
    """What the writer does at rotation: publish the Parquet file, then delete the journal."""
    contents = files.read_journal(journal.path)
    stem = layout.stem_of(journal.path)
    assert stem is not None
    return files.publish(journal.path.parent, stem, TRADES.arrow, contents.batches, 1000)


def ids(con: Any, where: str = "true") -> list[int]:
    return [r[0] for r in run(con, f"SELECT id::BIGINT FROM trades WHERE {where} ORDER BY 1")[1]]


def test_store_rows_visible_at_flush_and_counted_once_after_rotation(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path, rotate_interval_s=60, clock=clock)
    store.append("trades", trades([1, 2, 3]))
    store.append("events", events([(T0_US, "gap", "BTC-USD", "spot_oss#0", "expected 1 got 3"),
                                   (T0_US + S, "synced", "BTC-USD", "spot_oss#0", None)]))
    store.append("book_changes", book([(T0_US, True, "bid", 99.0, 1.0, 10), (T0_US, True, "ask", 101.0, 2.0, 10),
                                       (T0_US + S, False, "bid", 99.5, 3.0, 11)]))
    store.append("quotes", quotes([(T0_US, 99.0, 1.0, 101.0, 2.0)]))
    assert store.flush().published == []
    con = connect(tmp_path)
    assert ids(con) == [1, 2, 3]
    assert ids(connect(tmp_path, live=False)) == []
    at = dt.datetime.fromtimestamp(T0_S + 2, tz=dt.UTC).isoformat()
    assert run(con, f"SELECT side, price, amount FROM book_at('spot', 'BTC-USD', '{at}')")[1] == [
        ("bid", 99.5, 3.0), ("bid", 99.0, 1.0), ("ask", 101.0, 2.0)]
    assert run(con, "SELECT id, bid_price FROM trades_with_quote('spot', 'BTC-USD', '2023-11-14', '2023-11-15')"
               )[1] == [("1", 99.0), ("2", 99.0), ("3", 99.0)]
    assert [r[0] for r in run(con, "SELECT kind FROM gaps('2023-11-14', '2023-11-15')")[1]] == ["gap"]

    store.append("trades", trades([4]))
    store.flush()
    assert ids(con) == [1, 2, 3]  # a snapshot as of connect()
    con = connect(tmp_path, con)  # refreshed
    assert ids(con) == [1, 2, 3, 4]

    clock.now += 61  # rotates: the journals become Parquet files
    published = store.flush().published
    assert any(p.parent.name == "date=2023-11-14" and "trades-" in p.name for p in published)
    assert ids(con) == [1, 2, 3, 4]  # the connection made before the rotation: still once
    assert ids(connect(tmp_path)) == [1, 2, 3, 4]
    assert ids(connect(tmp_path, live=False)) == [1, 2, 3, 4]
    store.close()


def test_live_views_keep_the_published_schema(tmp_path: Path) -> None:
    with Store(tmp_path, clock=Clock()) as store:  # close() publishes: one file per table
        store.append("trades", trades([1]))
        store.append("book_changes", book([(T0_US, True, "bid", 99.0, 1.0, 10)]))
        store.append("quotes", quotes([(T0_US, 99.0, 1.0, 101.0, 2.0)]))
        store.append("events", events([(T0_US, "gap", "BTC-USD", None, None)]))
        store.append("raw", {"local_timestamp": [T0_US], "server": ["spot_oss"],
                             "connection": ["spot_oss#0"], "frame": ["{}"]})
    with Store(tmp_path, clock=Clock(T0_S + 10)) as store:  # the same partitions, now open
        store.append("trades", trades([2], ts=[T0_US + 10 * S]))
        store.append("book_changes", book([(T0_US + 10 * S, True, "bid", 98.0, 1.0, 20)]))
        store.append("quotes", quotes([(T0_US + 10 * S, 98.0, 1.0, 101.0, 2.0)]))
        store.append("events", events([(T0_US + 10 * S, "synced", "BTC-USD", None, None)]))
        store.append("raw", {"local_timestamp": [T0_US + 10 * S], "server": ["spot_oss"],
                             "connection": ["spot_oss#0"], "frame": ["[]"]})
        store.flush()
        live_con, published = connect(tmp_path), connect(tmp_path, live=False)
        for table in ("trades", "book_changes", "quotes", "events", "raw", "book_snapshots", "otc_quotes"):
            assert live_con.sql(f"DESCRIBE {table}").fetchall() == published.sql(f"DESCRIBE {table}").fetchall()
            n_live = run(live_con, f"SELECT count(*) FROM {table}")[1][0][0]
            n_pub = run(published, f"SELECT count(*) FROM {table}")[1][0][0]
            assert n_live == n_pub + (table not in ("book_snapshots", "otc_quotes")), table
        # Hive columns of journal rows come from their folder, with the Parquet types
        assert run(live_con, "SELECT server, date, frame FROM raw ORDER BY local_timestamp")[1] == [
            ("spot_oss", dt.date(2023, 11, 14), "{}"), ("spot_oss", dt.date(2023, 11, 14), "[]")]
        assert run(live_con, "SELECT local_timestamp FROM trades WHERE id = '2'")[1] == [
            (dt.datetime.fromtimestamp(T0_S + 10, tz=dt.UTC),)]


def test_torn_tail_is_ignored(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [[1, 2], [3]])
    torn = to_arrow(TRADES, trades([4, 5])).to_batches()[0].serialize()
    files.write_all(journal.fd, torn.to_pybytes()[: torn.size // 2])  # a flush being written
    assert ids(connect(tmp_path)) == [1, 2, 3]
    snap = live.snapshot(tmp_path.resolve(), TRADES)
    assert [j.torn_tail for j in snap.journals] == [True] and snap.rows == 3


def test_journal_without_a_complete_header_is_empty(tmp_path: Path) -> None:
    directory = tmp_path / part()
    directory.mkdir(parents=True)
    (directory / ".trades-20231114T221320.000000Z-aaaaaaaaaaaa.journal").write_bytes(b"")
    (directory / ".trades-20231114T221320.000000Z-bbbbbbbbbbbb.journal").write_bytes(
        TRADES.arrow.serialize().to_pybytes()[:10])
    make_journal(tmp_path, [[7]])
    assert ids(connect(tmp_path)) == [7]


def test_journal_whose_parquet_exists_is_not_double_counted(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [[1, 2]])
    publish(journal)  # the window between the rename and the journal's unlink
    assert journal.path.exists()
    assert ids(connect(tmp_path)) == [1, 2]
    assert live.snapshot(tmp_path.resolve(), TRADES).journals == []


def test_journal_published_between_listing_and_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = make_journal(tmp_path, [[1, 2]])
    make_journal(tmp_path, [[10]], symbol="ETH-USD", stem="trades-20231114T221320.000000Z-eeeeeeeeeeee")
    real = live.read_complete_batches

    def publish_first(path: Path, schema: pa.Schema) -> Any:
        if path == journal.path.resolve():
            publish(journal)
            journal.path.unlink()
        return real(path, schema)

    monkeypatch.setattr(live, "read_complete_batches", publish_first)
    con = connect(tmp_path)
    assert not journal.path.exists()
    assert ids(con) == [1, 2, 10]


def test_journal_published_after_connect_is_counted_once(tmp_path: Path) -> None:
    files.atomic_write_parquet(layout.anchor_path(tmp_path, TRADES), TRADES.arrow.empty_table())  # as the Store does
    journal = make_journal(tmp_path, [[1, 2]])
    con = connect(tmp_path)
    journal.append(to_arrow(TRADES, trades([3])))  # flushed after the snapshot
    publish(journal)
    journal.path.unlink()
    assert ids(con) == [1, 2]  # the snapshot, not the snapshot plus the new file
    assert ids(connect(tmp_path)) == [1, 2, 3]


def test_published_only_excludes_journal_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store(tmp_path, clock=Clock()) as store:
        store.append("trades", trades([1]))
    make_journal(tmp_path, [[2, 3]])
    capsys.readouterr()  # the store's log lines
    sql = "SELECT count(*) AS n FROM trades"
    assert cli.main(["query", "--data-dir", str(tmp_path), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "n\n3\n"
    assert cli.main(["query", "--data-dir", str(tmp_path), "--format", "csv", "--published-only", sql]) == 0
    assert capsys.readouterr().out == "n\n1\n"


def test_partition_columns_prune_journals(tmp_path: Path) -> None:
    make_journal(tmp_path, [[1, 2]])
    make_journal(tmp_path, [[10]], symbol="ETH-USD", stem="trades-20231114T221320.000000Z-eeeeeeeeeeee")
    con = connect(tmp_path)  # no Parquet file at all: the journals alone make the view
    assert ids(con, "symbol = 'ETH-USD'") == [10]
    assert ids(con, "date = '2023-11-14' AND product = 'spot'") == [1, 2, 10]
    assert ids(con, "date = '2023-11-15'") == []
    plan = "\n".join(r[1] for r in con.sql("EXPLAIN SELECT count(*) FROM trades WHERE symbol = 'ETH-USD'").fetchall())
    assert plan.count("ARROW_SCAN") == 1  # the BTC-USD journal's branch is gone
    plan = "\n".join(r[1] for r in con.sql("EXPLAIN SELECT count(*) FROM trades WHERE date > '2023-11-14'").fetchall())
    assert "ARROW_SCAN" not in plan


def test_foreign_files_and_folders_are_ignored(tmp_path: Path) -> None:
    make_journal(tmp_path, [[1]])
    (tmp_path / part() / ".notes.journal").write_bytes(b"hello")
    odd = tmp_path / "trades" / "product=spot" / ".trades-20231114T221320.000000Z-cccccccccccc.journal"
    odd.write_bytes(b"")
    other = SCHEMAS["quotes"].arrow
    files.Journal(layout.journal_path(tmp_path / part(), "trades-20231114T221320.000000Z-dddddddddddd"), other)
    snap = live.snapshot(tmp_path.resolve(), TRADES)
    assert (snap.rows, snap.skipped) == (1, 3)
    assert ids(connect(tmp_path)) == [1]


def test_refresh_unregisters_old_journal_tables(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [[1]])
    con = connect(tmp_path)
    publish(journal)
    journal.path.unlink()
    con = connect(tmp_path, con)
    names = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE temporary").fetchall()]
    assert [n for n in names if n.startswith(LIVE_PREFIX)] == []
    assert ids(con) == [1]
