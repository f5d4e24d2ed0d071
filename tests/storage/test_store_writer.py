from __future__ import annotations

import errno
import glob
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from storage_helpers import DAY_US, T0_US, Clock, book, trades

from collector.errors import RowsRejected, StorageError, StoreWriteError, UnsafePathError
from collector.storage import Store, files, newest_trades


def published(root: Path, table: str) -> list[str]:
    return sorted(p for p in glob.glob(f"{root}/{table}/**/*.parquet", recursive=True)
                  if not p.endswith("_schema.parquet"))


def hidden(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(".*") if p.name != ".btse-collector.lock")


def read_ids(root: Path) -> list[str]:
    rows = duckdb.sql(
        f"SELECT id FROM read_parquet('{root}/trades/**/*.parquet', hive_partitioning=true) ORDER BY id::BIGINT"
    ).fetchall()
    return [r[0] for r in rows]


def test_flush_makes_durable_rotation_publishes(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, rotate_interval_s=60, clock=clock)
    store.append("trades", trades([1, 2, 3]))
    result = store.flush()
    assert result.rows == {"trades": 3} and result.published == []
    assert published(tmp_path, "trades") == []  # durable in the journal, not visible yet
    journals = [p for p in hidden(tmp_path) if p.endswith(".journal")]
    assert len(journals) == 1 and "symbol=BTC-USD/date=2023-11-14" in journals[0]
    clock.now += 61
    result = store.flush()
    assert len(result.published) == 1
    assert hidden(tmp_path) == []
    assert read_ids(tmp_path) == ["1", "2", "3"]
    store.append("trades", trades([4]))
    store.close()
    assert read_ids(tmp_path) == ["1", "2", "3", "4"]
    assert len(published(tmp_path, "trades")) == 2


def test_rows_split_by_symbol_and_date(tmp_path: Path, clock: Clock) -> None:
    batch = trades([1, 2, 3, 4], ts=[T0_US, T0_US + DAY_US, T0_US + 1, T0_US + 2])
    batch["symbol"] = ["BTC-USD", "BTC-USD", "ETH-USD", "BTC-USD"]
    with Store(tmp_path, clock=clock) as store:
        store.append("trades", batch)
    files_ = [p.split("/trades/")[1].rsplit("/", 1)[0] for p in published(tmp_path, "trades")]
    assert sorted(files_) == [
        "product=spot/symbol=BTC-USD/date=2023-11-14",
        "product=spot/symbol=BTC-USD/date=2023-11-15",
        "product=spot/symbol=ETH-USD/date=2023-11-14",
    ]
    rows = duckdb.sql(
        f"SELECT symbol, date::VARCHAR, list(id ORDER BY local_timestamp) FROM "
        f"read_parquet('{tmp_path}/trades/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [("BTC-USD", "2023-11-14", ["1", "4"]), ("BTC-USD", "2023-11-15", ["2"]),
                    ("ETH-USD", "2023-11-14", ["3"])]


def test_files_have_zstd_large_row_groups_and_all_columns(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, row_group_rows=1000, clock=clock)
    for start in range(0, 2500, 100):  # 25 flushes of 100 rows
        store.append("trades", trades(range(start, start + 100)))
        store.flush()
    store.close()
    [path] = published(tmp_path, "trades")
    meta = pq.read_metadata(path)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert "symbol" in meta.schema.names and "product" in meta.schema.names


def test_rotation_by_size(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, rotate_max_bytes=2000, clock=clock)
    for i in range(6):
        store.append("trades", trades(range(i * 20, i * 20 + 20)))
        store.flush()
    store.close()
    assert len(published(tmp_path, "trades")) >= 3
    assert read_ids(tmp_path) == [str(i) for i in range(120)]


@pytest.mark.parametrize(
    ("mutate", "column", "message"),
    [
        (lambda b: b.pop("price"), "price", "missing column"),
        (lambda b: b.update(venue=["x"] * 2), "venue", "unknown column"),
        (lambda b: b.update(price=[1.0]), "price", "has 1 values"),
        (lambda b: b.update(price=["1.0", "2.0"]), "price", "expected float64"),
        (lambda b: b.update(id=[1, 2]), "id", "expected string"),
        (lambda b: b.update(local_timestamp=[None, 1]), "local_timestamp", "non-nullable"),
    ],
)
def test_bad_batches_are_rejected_naming_table_and_column(tmp_path, clock, mutate, column, message):
    store = Store(tmp_path, clock=clock)
    batch = trades([1, 2])
    mutate(batch)
    with pytest.raises(RowsRejected, match=message) as info:
        store.append("trades", batch)
    assert (info.value.table, info.value.column) == ("trades", column)
    with pytest.raises(RowsRejected, match="unknown table"):
        store.append("nope", batch)
    assert store.buffered_rows == 0
    store.close()


def test_unsafe_symbol_rejected_before_touching_disk(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, clock=clock)
    for bad in ("../../escape", "/abs", "a\x00b", ".hidden"):
        with pytest.raises(UnsafePathError):
            store.append("trades", trades([1], symbol=bad))
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".btse-collector.lock", "book_changes", "book_snapshots", "events", "otc_quotes", "quotes", "raw", "trades"])
    assert not (tmp_path.parent / "escape").exists()
    assert published(tmp_path, "trades") == []


def test_second_store_on_same_folder_refused(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, clock=clock)
    with pytest.raises(StorageError, match="another collector"):
        Store(tmp_path, clock=clock)
    store.close()
    Store(tmp_path, clock=clock).close()


def test_no_glob_sees_a_file_being_published(tmp_path: Path, clock: Clock, monkeypatch) -> None:
    store = Store(tmp_path, clock=clock)
    store.append("trades", trades([1, 2]))
    store.close()  # one published file
    store = Store(tmp_path, clock=clock)
    store.append("trades", trades([3, 4, 5]))
    store.flush()
    seen = []
    real_replace = files._replace

    def checking_replace(src, dst):
        # The temp file is complete on disk: neither a glob nor DuckDB may see it.
        assert Path(src).exists() and not Path(dst).exists()
        seen.append((published(tmp_path, "trades"), read_ids(tmp_path),
                     glob.glob(f"{tmp_path}/**/*.parquet", recursive=True)))
        real_replace(src, dst)

    monkeypatch.setattr(files, "_replace", checking_replace)
    store.close()
    [(during, ids, all_parquet)] = seen
    assert len(during) == 1 and ids == ["1", "2"]
    assert not any(".tmp" in p or ".journal" in p for p in all_parquet)
    assert read_ids(tmp_path) == ["1", "2", "3", "4", "5"]


def test_disk_full_keeps_published_files_and_rows(tmp_path: Path, clock: Clock, monkeypatch) -> None:
    store = Store(tmp_path, rotate_interval_s=10, clock=clock)
    store.append("trades", trades([1, 2]))
    store.flush()
    clock.now += 11
    store.flush()
    [first] = published(tmp_path, "trades")
    before = Path(first).read_bytes()
    real_write = files._write
    calls = {"n": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if calls["n"] > 1:  # let one partial write through, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data[: max(1, len(data) // 2)])

    monkeypatch.setattr(files, "_write", full_disk)
    store.append("trades", trades([3, 4, 5]))
    with pytest.raises(StoreWriteError, match="disk full") as info:
        store.flush()
    assert info.value.errno == errno.ENOSPC
    assert Path(first).read_bytes() == before
    assert store.buffered_rows >= 3  # the rows (and an error event) are kept for retry
    monkeypatch.setattr(files, "_write", real_write)
    store.flush()
    store.close()
    assert read_ids(tmp_path) == ["1", "2", "3", "4", "5"]
    events = duckdb.sql(
        f"SELECT kind, detail FROM read_parquet('{tmp_path}/events/**/*.parquet') WHERE kind = 'error'"
    ).fetchall()
    assert len(events) == 1 and "ENOSPC" in events[0][1] and '"errno": 28' in events[0][1]


def test_publish_failure_keeps_journal_and_retries(tmp_path: Path, clock: Clock, monkeypatch) -> None:
    store = Store(tmp_path, clock=clock)
    store.append("trades", trades([1, 2]))

    def denied(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files, "_replace", denied)
    with pytest.raises(StoreWriteError, match="Permission denied"):
        store.close()
    assert published(tmp_path, "trades") == []
    assert not [p for p in hidden(tmp_path) if p.endswith(".tmp")]  # temp file cleaned up
    monkeypatch.undo()
    store.close()
    assert read_ids(tmp_path) == ["1", "2"]


def test_bounded_buffer_sheds_oldest_and_records_it(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, max_buffered_rows=10, clock=clock)
    store.append("trades", trades(range(0, 8)))
    store.append("trades", trades(range(8, 16)))
    assert store.shed_rows == {"trades": 8}
    store.close()
    assert read_ids(tmp_path) == [str(i) for i in range(8, 16)]
    [(kind, count)] = duckdb.sql(
        f"SELECT kind, count FROM read_parquet('{tmp_path}/events/**/*.parquet')").fetchall()
    assert (kind, count) == ("shed", 8)


def test_book_changes_rotate_only_at_a_snapshot(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, rotate_interval_s=10, clock=clock)
    t = T0_US
    store.append("book_changes", book([(t, True, "bid", 99.0, 1.0, 10), (t, True, "ask", 101.0, 1.0, 10)]))
    store.append("book_changes", book([(t + 1, False, "bid", 99.0, 2.0, 11)]))
    assert store.flush().snapshot_wanted == frozenset()
    clock.now += 11
    assert store.flush().snapshot_wanted == {("spot", "BTC-USD")}
    assert published(tmp_path, "book_changes") == []  # still open: waiting for a snapshot
    store.append("book_changes", book([(t + 2, False, "ask", 101.0, 0.5, 12),
                                       (t + 3, True, "bid", 98.0, 3.0, 20),
                                       (t + 3, True, "ask", 102.0, 3.0, 20),
                                       (t + 4, False, "ask", 102.0, 0.0, 21)]))
    result = store.flush()
    assert len(result.published) == 1 and result.snapshot_wanted == frozenset()
    store.close()
    firsts = []
    for path in published(tmp_path, "book_changes"):
        table = pq.read_table(path)
        firsts.append((table.column("is_snapshot")[0].as_py(), table.column("seq").to_pylist()))
    assert sorted(firsts) == [(True, [10, 10, 11, 12]), (True, [20, 20, 21])]


def test_book_changes_date_change_waits_for_snapshot(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, clock=clock)
    t = T0_US
    store.append("book_changes", book([(t, True, "bid", 99.0, 1.0, 10)]))
    store.flush()
    store.append("book_changes", book([(t + DAY_US, False, "bid", 99.0, 2.0, 11)]))
    assert store.flush().snapshot_wanted == {("spot", "BTC-USD")}
    store.append("book_changes", book([(t + DAY_US + 1, True, "bid", 98.0, 1.0, 12)]))
    store.close()
    dirs = sorted(p.split("/book_changes/")[1].rsplit("/", 1)[0] for p in published(tmp_path, "book_changes"))
    assert dirs == ["product=spot/symbol=BTC-USD/date=2023-11-14", "product=spot/symbol=BTC-USD/date=2023-11-15"]


def test_book_changes_forced_rotation_without_snapshot_is_an_event(tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path, rotate_interval_s=10, clock=clock)
    store.append("book_changes", book([(T0_US, True, "bid", 99.0, 1.0, 10)]))
    store.flush()
    clock.now += 11
    assert store.flush().snapshot_wanted == {("spot", "BTC-USD")}
    clock.now += 11
    result = store.flush()
    assert len(result.published) == 1
    store.close()
    [(detail,)] = duckdb.sql(
        f"SELECT detail FROM read_parquet('{tmp_path}/events/**/*.parquet') WHERE kind='error'").fetchall()
    assert "no snapshot arrived" in detail


def test_newest_trades_by_exchange_time_not_by_id(tmp_path: Path, clock: Clock) -> None:
    # BTSE's tradeIds go back down (reference §3.3.1): the newest trade is the latest in time
    with Store(tmp_path, clock=clock) as store:
        store.append("trades", trades([929934907, 929934908], ts=[T0_US + 10, T0_US + 20]))
        store.append("trades", trades([40, 41, 42], symbol="BTC-PERP", product="futures", ts=[T0_US + 5, T0_US + 9, T0_US + 9]))
    with Store(tmp_path, clock=clock) as store:
        batch = trades([57971633, 57971634], ts=[T0_US + 30, T0_US + 31])
        batch["timestamp"] = [T0_US + 25, T0_US + 25]  # two trades in one millisecond
        store.append("trades", batch)
        # a later date folder wins over a higher id in an earlier one
        store.append("trades", trades([7], symbol="BTC-PERP", product="futures", ts=[T0_US + DAY_US]))
        # the store reads published files: the run before this one
        assert store.newest_trades() == {
            ("spot", "BTC-USD"): (T0_US + 15, ("929934908",)),
            ("futures", "BTC-PERP"): (T0_US + 4, ("41", "42")),
        }
    assert newest_trades(tmp_path) == {
        ("spot", "BTC-USD"): (T0_US + 25, ("57971633", "57971634")),
        ("futures", "BTC-PERP"): (T0_US + DAY_US - 5, ("7",)),
    }


def _arrow_trades(ids: list[int]) -> dict[str, object]:
    """A trades batch with a mix of Arrow arrays, chunked arrays and lists."""
    batch: dict[str, object] = dict(trades(ids))
    batch["local_timestamp"] = pa.array(batch["local_timestamp"], pa.int64())  # int µs
    batch["timestamp"] = pa.array(batch["timestamp"], pa.timestamp("us", tz="UTC"))
    batch["price"] = pa.chunked_array([pa.array(batch["price"][:1]), pa.array(batch["price"][1:])])
    batch["symbol"] = pa.array(batch["symbol"]).dictionary_encode()
    batch["side"] = pa.array(batch["side"], pa.large_string())
    return batch


def test_append_accepts_arrow_arrays_per_column(tmp_path: Path, clock: Clock) -> None:
    with Store(tmp_path, clock=clock) as store:
        store.append("trades", _arrow_trades([1, 2, 3]))
        store.append("trades", trades([4]))
    rows = duckdb.sql(
        f"SELECT id, symbol, side, price, epoch_us(local_timestamp), epoch_us(timestamp) FROM "
        f"read_parquet('{tmp_path}/trades/**/*.parquet', hive_partitioning=true) ORDER BY id"
    ).fetchall()
    assert rows == [(str(i), "BTC-USD", "buy" if i % 2 else "sell", 100.0 + i / 100,
                     T0_US + i, T0_US + i - 5) for i in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("price", pa.array(["1.0", "2.0"]), "expected float64: got an Arrow string array"),
        ("id", pa.array([1, 2]), "expected string: got an Arrow int64 array"),
        ("price", pa.array([1.0]), "has 1 values"),
        ("price", pa.chunked_array([pa.array([1.0]), pa.array([2.0, 3.0])]), "has 3 values"),
        ("local_timestamp", pa.array([1.5, 2.0]), "expected timestamp_us"),
        ("local_timestamp", pa.array([None, 1], pa.int64()), "non-nullable"),
        ("exchange", ["btse", 7], "expected string"),
    ],
)
def test_arrow_columns_are_validated_like_lists(tmp_path, clock, column, values, message):
    store = Store(tmp_path, clock=clock)
    batch = dict(trades([1, 2]))
    batch[column] = values
    with pytest.raises(RowsRejected, match=message) as info:
        store.append("trades", batch)
    assert (info.value.table, info.value.column) == ("trades", column)
    assert store.buffered_rows == 0
    store.close()


def test_interleaved_symbols_split_in_order_in_one_batch(tmp_path: Path, clock: Clock) -> None:
    ids = list(range(1, 41))
    batch = trades(ids, ts=[T0_US + i + (DAY_US if i > 30 else 0) for i in ids])
    batch["symbol"] = [("BTC-USD", "ETH-USD", "XRP-USD")[i % 3] for i in ids]
    batch["product"] = ["futures" if i % 3 == 2 else "spot" for i in ids]
    with Store(tmp_path, clock=clock) as store:
        store.append("trades", batch)
    rows = duckdb.sql(
        f"SELECT product, symbol, date::VARCHAR, list(id::INT ORDER BY local_timestamp) FROM "
        f"read_parquet('{tmp_path}/trades/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    expected: dict[tuple[str, str, str], list[int]] = {}
    for i in ids:
        key = ("futures" if i % 3 == 2 else "spot", ("BTC-USD", "ETH-USD", "XRP-USD")[i % 3],
               "2023-11-15" if i > 30 else "2023-11-14")
        expected.setdefault(key, []).append(i)
    assert rows == sorted((*k, v) for k, v in expected.items())
    assert len(published(tmp_path, "trades")) == len(expected) == 6


def test_raw_frames_are_plain_encoded_without_statistics(tmp_path: Path, clock: Clock) -> None:
    n = 50
    with Store(tmp_path, clock=clock) as store:
        store.append("raw", {
            "local_timestamp": [T0_US + i for i in range(n)], "server": ["spot_oss"] * n,
            "connection": ["spot_oss#0"] * n, "frame": [f'{{"seq":{i}}}' for i in range(n)],
        })
    [path] = published(tmp_path, "raw")
    meta = pq.read_metadata(path).row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "PLAIN_DICTIONARY" not in cols["frame"].encodings and "RLE_DICTIONARY" not in cols["frame"].encodings
    assert not cols["frame"].is_stats_set and cols["local_timestamp"].is_stats_set
    assert "RLE_DICTIONARY" in cols["server"].encodings or "PLAIN_DICTIONARY" in cols["server"].encodings
    frames = pq.read_table(path).column("frame").to_pylist()
    assert frames == [f'{{"seq":{i}}}' for i in range(n)]
