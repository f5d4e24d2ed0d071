"""The whole collector (in-process daemon) against the simulator with every fault injected;
afterwards only the Parquet store is read back, with DuckDB."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e_helpers import (
    FUTURES,
    SPOT,
    db,
    deltas_continue_their_snapshot,
    rebuild_books,
    until,
    write_config,
)

from collector.config import load_config
from collector.protocol.book import LIVE
from collector.service.daemon import Daemon
from collector.simulator import Simulator

pytestmark = pytest.mark.e2e

CONNECTION_LOSS = ("disconnect", "stall", "error1007", "huge")


def _live(daemon: Daemon) -> bool:
    norm = daemon.normalizer
    assert norm is not None
    books = [b for b in norm.books.values() if b.grouping == 0]
    return len(books) == len(SPOT) + len(FUTURES) and all(b.state is LIVE for b in books)


async def test_every_fault_is_survived_and_the_store_matches_the_truth(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with Simulator(
        seed=7, symbols={"spot": SPOT, "futures": FUTURES}, rate=150, recent_trades=50
    ) as sim:
        config = load_config(write_config(tmp_path / "c.yaml", data, sim.urls))
        daemon = Daemon(config, install_signals=False, ready_timeout=10)
        await daemon.startup()
        assert daemon.ready.is_set()
        norm, sup = daemon.normalizer, daemon.supervisor
        assert norm is not None and sup is not None
        await until(lambda: _live(daemon), "all books live")
        stats = norm.stats

        sim.inject("gap", product="spot", symbol="BTC-USD")
        await until(lambda: stats.gaps >= 1 and _live(daemon), "gap detected and healed")
        sim.inject("dup", product="spot", symbol="ETH-USD")
        await until(lambda: stats.duplicates >= 1, "duplicate detected")
        sim.inject("crossed", product="futures", symbol="BTC-PERP")
        await until(lambda: stats.crossed >= 1 and _live(daemon), "crossed detected and healed")
        sim.inject("malformed", server="spot")
        await until(lambda: stats.decode_failures >= 2, "malformed frames recorded")
        sim.inject("rename", product="futures", seconds=1.0)
        sim.inject("slow", server="futures_oss", seconds=0.5, delay=0.002)
        spot_oss = sup.connections["spot_oss#0"]
        sim.inject("disconnect", server="spot_oss")
        await until(
            lambda: spot_oss.stats.sessions >= 2 and _live(daemon), "reconnected after disconnect"
        )
        fut_oss = sup.connections["futures_oss#0"]
        sim.inject("huge", server="futures_oss", size=100_000)
        await until(
            lambda: fut_oss.stats.sessions >= 2 and _live(daemon), "oversize frame survived"
        )
        # (a stalled socket lingers on the server side: stall last on this server)
        sim.inject("stall", server="futures_oss", seconds=3)
        await until(
            lambda: fut_oss.stats.reasons.get("stale", 0) >= 1 and _live(daemon),
            "stale connection replaced",
        )
        sim.inject("error1007", server="spot_oss")
        await until(lambda: len(sup.connections) == 5 and _live(daemon), "1007 split the topics")
        # a trades connection drops: the recent trades BTSE re-sends on subscribe are de-duplicated
        spot_main = sup.connections["spot#0"]
        sim.inject("disconnect", server="spot")
        await until(
            lambda: spot_main.stats.sessions >= 2 and spot_main.connected.is_set(),
            "trades connection back",
        )
        trades_back_wall = time.time()
        renamed_before = sum(1 for f in sim.truth.faults if f.kind == "rename")
        assert renamed_before >= 1
        # let the healed streams run a little so every book has deltas after its last resync
        marks = {k: b.last_seq for k, b in norm.books.items()}
        await until(
            lambda: all(norm.books[k].last_seq > s + 20 for k, s in marks.items()),
            "fresh deltas on every book",
        )
        daemon._observe(time.time())  # what the 1 s health tick does
        reg = daemon.metrics.registry
        assert (
            reg.get_sample_value(
                "btse_collector_exchange_errors_total", {"server": "spot_oss", "code": "1007"}
            )
            == 1
        )
        trade_dups = [
            reg.get_sample_value(
                "btse_collector_duplicates_total", {"product": p, "symbol": s, "kind": "trades"}
            )
            or 0
            for p, s in norm.trade_duplicates()
        ]
        assert sum(trade_dups) == norm.stats.trade_duplicates > 0  # resubscribes re-send trades
        report = daemon.health.evaluate()
        assert report.healthy, report.reasons
        assert {(r.key.kind, r.state) for r in report.streams} == {
            ("book", "live"),
            ("trades", "live"),
            ("l1", "live"),
        }
        assert len(report.streams) == 3 * (len(SPOT) + len(FUTURES))
        stop_wall = time.time()
        daemon.request_stop()
        await daemon.shutdown()
        assert daemon.exit_code == 0
        truth = sim.truth
        faults = list(truth.faults)

    con = db(data)
    # 1. books rebuilt from book_changes equal the truth at the last stored seqNum
    books = rebuild_books(con)
    assert sorted(books) == sorted(
        [("spot", s, 0) for s in SPOT] + [("futures", s, 0) for s in FUTURES]
    )
    for (product, symbol, grouping), book in books.items():
        true = truth.book(product, symbol, grouping, seq=book["seq"])
        assert book["bid"] == {float(p): float(a) for p, a in true.bids}, (
            product,
            symbol,
            book["seq"],
        )
        assert book["ask"] == {float(p): float(a) for p, a in true.asks}, (
            product,
            symbol,
            book["seq"],
        )
    assert deltas_continue_their_snapshot(con) == []

    # 2. every trade sent outside connection-loss windows is stored exactly once
    dupes = con.execute(
        "SELECT product, symbol, id, count(*) FROM trades GROUP BY ALL HAVING count(*) > 1"
    ).fetchall()
    assert dupes == []
    stored = {
        (p, s, str(i))
        for p, s, i in con.execute("SELECT product, symbol, id FROM trades").fetchall()
    }
    # trades are lost only while a trades (main) server connection is down
    windows = [
        (f.at - 0.1, trades_back_wall + 0.1)
        for f in faults
        if f.kind in CONNECTION_LOSS and f.detail.get("server") in ("spot", "futures", None)
    ]
    assert len(windows) == 1
    expected = {
        (t.product, t.symbol, str(t.trade_id))
        for product, symbols in (("spot", SPOT), ("futures", FUTURES))
        for symbol in symbols
        for t in truth.trades(product, symbol)
        if t.sent_at is not None
        and t.sent_at < stop_wall - 0.5
        and not any(a <= t.sent_at <= b for a, b in windows)
    }
    assert len(expected) > 100
    missing = expected - stored
    assert not missing, f"{len(missing)} trades missing, e.g. {sorted(missing)[:5]}"

    # 3. every gap, crossed book and disconnect has its events row
    kinds = dict(con.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    for kind in (
        "gap",
        "duplicate",
        "crossed",
        "resync",
        "disconnected",
        "stale",
        "decode_error",
        "error",
        "connected",
        "synced",
        "subscribed",
    ):
        assert kinds.get(kind, 0) >= 1, f"no {kind!r} event; have {kinds}"
    gap = con.execute(
        "SELECT symbol, expected_seq, received_seq FROM events WHERE kind = 'gap'"
    ).fetchall()
    assert tuple({g[0] for g in gap}) == ("BTC-USD",) and all(g[2] > g[1] for g in gap)
    crossed = con.execute("SELECT DISTINCT symbol FROM events WHERE kind = 'crossed'").fetchall()
    assert crossed == [("BTC-PERP",)]
    disconnected = {
        c
        for (c,) in con.execute(
            "SELECT DISTINCT connection FROM events WHERE kind = 'disconnected' AND detail NOT LIKE 'shutdown%'"
        ).fetchall()
    }
    assert {"spot_oss#0", "futures_oss#0"} <= disconnected
    errors = con.execute("SELECT detail FROM events WHERE kind = 'error'").fetchall()
    assert any("1007" in d for (d,) in errors)
    # raw keeps every frame, including the malformed ones
    assert con.execute("SELECT count(*) FROM raw WHERE frame LIKE '%broken%'").fetchall() == [(1,)]
