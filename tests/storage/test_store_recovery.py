from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from storage_helpers import Clock, trades

from collector.storage import Store, files, layout, recover
from collector.storage.schemas import load_schemas
from collector.storage.writer import to_arrow

SCHEMA = load_schemas()["trades"]
PART = Path("trades/product=spot/symbol=BTC-USD/date=2023-11-14")


def make_journal(root: Path, batches: list[list[int]], stem: str = "trades-20231114T221320.000000Z-0123456789ab") -> Path:
    journal = files.Journal(layout.journal_path(root / PART, stem), SCHEMA.arrow)
    for ids in batches:
        journal.append(to_arrow(SCHEMA, trades(ids)))
    journal.close()
    return journal.path


def ids_in(root: Path) -> list[str]:
    return [r[0] for r in duckdb.sql(
        f"SELECT id FROM read_parquet('{root}/trades/**/*.parquet') ORDER BY id::BIGINT").fetchall()]


def test_leftover_journal_is_published_torn_tail_cut(tmp_path: Path) -> None:
    path = make_journal(tmp_path, [[1, 2], [3]])
    with open(path, "ab") as f:  # a batch whose flush never returned: half written
        f.write(to_arrow(SCHEMA, trades([4, 5])).to_batches()[0].serialize().to_pybytes()[:100])
    report = recover(tmp_path)
    [item] = report.items
    assert (item.action, item.rows) == ("published", 3) and "torn" in item.detail
    assert not path.exists()
    assert ids_in(tmp_path) == ["1", "2", "3"]


def test_journal_of_already_published_file_is_dropped(tmp_path: Path) -> None:
    path = make_journal(tmp_path, [[1, 2]])
    stem = layout.stem_of(path)
    assert stem is not None
    contents = files.read_journal(path)
    files.publish(path.parent, stem, SCHEMA.arrow, contents.batches, 1000)  # crash before unlink
    [item] = recover(tmp_path).items
    assert item.action == "discarded"
    assert ids_in(tmp_path) == ["1", "2"]  # not twice


def test_tmp_with_journal_is_discarded_and_journal_republished(tmp_path: Path) -> None:
    path = make_journal(tmp_path, [[1, 2]])
    stem = layout.stem_of(path)
    assert stem is not None
    layout.tmp_path(path.parent, stem).write_bytes(b"PAR1 half a file")
    report = recover(tmp_path)
    assert [i.action for i in report.items] == ["discarded", "published"]
    assert ids_in(tmp_path) == ["1", "2"]
    assert [p.name for p in (tmp_path / PART).iterdir()] == [f"{stem}.parquet"]


def test_complete_orphan_tmp_is_published_broken_one_quarantined(tmp_path: Path) -> None:
    good = layout.tmp_path(tmp_path / PART, "trades-20231114T221320.000000Z-aaaaaaaaaaaa")
    good.parent.mkdir(parents=True)
    files.write_parquet(good, SCHEMA.arrow, to_arrow(SCHEMA, trades([7])).to_batches(), 1000)
    bad = layout.tmp_path(tmp_path / PART, "trades-20231114T221320.000000Z-bbbbbbbbbbbb")
    bad.write_bytes(b"garbage")
    garbled = layout.journal_path(tmp_path / PART, "trades-20231114T221320.000000Z-cccccccccccc")
    garbled.write_bytes(b"not arrow at all")
    report = recover(tmp_path)
    actions = sorted((i.path.name, i.action) for i in report.items)
    assert actions == sorted([(bad.name, "quarantined"), (good.name, "published"), (garbled.name, "quarantined")])
    assert ids_in(tmp_path) == ["7"]
    quarantined = sorted(p.name for p in (tmp_path / "_quarantine").rglob("*") if p.is_file())
    assert len(quarantined) == 2 and all(n.endswith(".quarantined") for n in quarantined)
    assert not list((tmp_path / "_quarantine").rglob("*.parquet"))


def test_store_runs_recovery_and_reports_events(tmp_path: Path) -> None:
    make_journal(tmp_path, [[1, 2, 3]])
    (tmp_path / PART / ".trades-20231114T221320.000000Z-dddddddddddd.journal").write_bytes(b"\x00" * 3)
    with Store(tmp_path, clock=Clock()) as store:
        assert sorted(i.action for i in store.recovery_report.items) == ["published", "quarantined"]
    rows = duckdb.sql(
        f"SELECT kind, product, symbol, count FROM read_parquet('{tmp_path}/events/**/*.parquet') ORDER BY kind"
    ).fetchall()
    assert rows == [("quarantined", "spot", "BTC-USD", 0), ("recovered", "spot", "BTC-USD", 3)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_permission_denied_is_a_store_write_error(tmp_path: Path) -> None:
    from collector.errors import StoreWriteError

    store = Store(tmp_path, clock=Clock())
    (tmp_path / "trades").chmod(0o500)
    try:
        store.append("trades", trades([1]))
        with pytest.raises(StoreWriteError):
            store.flush()
    finally:
        (tmp_path / "trades").chmod(0o700)
    store.close()
    assert ids_in(tmp_path) == ["1"]


def test_journal_batches_roundtrip_types(tmp_path: Path) -> None:
    path = make_journal(tmp_path, [[1], [2, 3]])
    contents = files.read_journal(path)
    assert contents.rows == 3 and not contents.torn_tail
    assert contents.schema is not None and contents.schema.field("local_timestamp").type == pa.timestamp("us", tz="UTC")
