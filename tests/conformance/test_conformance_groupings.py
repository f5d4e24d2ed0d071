"""Several groupings of one market on one OSS socket (reference §3.0, §3.6).

- each grouping (``update:BTC-PERP_0``, ``update:BTC-PERP_2``) is its own seqNum chain [wire]:
  the two chains interleave on the socket with unrelated numbers and neither is a gap of the other;
- the snapshot is sent ungrouped (raw book) and only the deltas follow the grouping [doc-new]:
  grouping 2 starts from the raw levels and then gets deltas on coarser prices; the collector
  stores exactly what BTSE sent, under ``grouping = 2``;
- a gap in the grouping-2 chain resubscribes ``update:BTC-PERP_2`` only; grouping 0 keeps flowing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, apply, collector, events, store, until
from btse_fake import write_config as make_config

MARKETS = """  - product: futures
    symbols: [BTC-PERP]
    channels: [book]
    groupings: [0, 2]
"""
TS = 1790133628000
RAW_BIDS = [["86600.0", "10"], ["86599.9", "20"], ["86599.5", "30"]]
RAW_ASKS = [["86601.5", "31"], ["86600.4", "21"], ["86600.1", "11"]]  # worst first


def frame(grouping: int, kind: str, seq: int, bids: Any, asks: Any) -> dict[str, Any]:
    data = {"bids": bids, "asks": asks, "seqNum": seq, "prevSeqNum": seq - 1, "type": kind}
    data |= {"symbol": "BTC-PERP", "timestamp": TS + seq % 1000}
    return {"topic": f"update:BTC-PERP_{grouping}", "data": data}


class Oss:
    def __init__(self) -> None:
        self.sent: dict[int, list[dict[str, Any]]] = {0: [], 2: []}
        self.seq = {0: 86511209, 2: 4410}  # two unrelated chains
        self.subscribes: list[list[str]] = []

    async def send(self, session: Session, grouping: int, kind: str, bids: Any, asks: Any) -> None:
        f = frame(grouping, kind, self.seq[grouping], bids, asks)
        self.sent[grouping].append(f["data"])
        self.seq[grouping] += 1
        await session.send(json.dumps(f))

    async def __call__(self, session: Session, msg: dict[str, Any]) -> None:
        op, args = msg.get("op"), msg.get("args") or []
        if op == "unsubscribe":
            await session.send(ack("unsubscribe", args))
            return
        if op != "subscribe" or not args:
            return
        self.subscribes.append(list(args))
        await session.send(ack("subscribe", args))
        for topic in args:  # raw snapshot for every grouping (§3.6 rule 2)
            await self.send(session, int(topic.rsplit("_", 1)[1]), "snapshot", RAW_BIDS, RAW_ASKS)
        if len(self.subscribes) > 1:
            return  # the resync: its snapshot is enough
        # interleaved deltas: grouping 0 on raw prices, grouping 2 on coarser prices
        await self.send(session, 0, "delta", [["86599.9", "0"]], [["86600.2", "5"]])
        await self.send(session, 2, "delta", [["86599.0", "70"]], [["86602.0", "80"]])
        await self.send(session, 0, "delta", [["86599.8", "4"]], [])
        await self.send(session, 2, "delta", [], [["86602.0", "0"], ["86603.0", "9"]])
        self.seq[2] += 5  # a gap in the grouping-2 chain only
        await self.send(session, 2, "delta", [["86598.0", "1"]], [])
        await self.send(session, 0, "delta", [], [["86600.4", "0"]])


def rebuilt(con: Any, grouping: int) -> tuple[dict[float, float], dict[float, float]]:
    rows = con.execute(
        "SELECT seq, is_snapshot, side, price, amount FROM book_changes WHERE symbol = 'BTC-PERP' "
        "AND grouping = ? ORDER BY seq, is_snapshot DESC",
        [grouping],
    ).fetchall()
    book: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    snap = None
    for seq, is_snapshot, side, price, amount in rows:
        if is_snapshot and snap != seq:
            book, snap = {"bid": {}, "ask": {}}, seq
        if amount == 0:
            book[side].pop(price, None)
        else:
            book[side][price] = amount
    return book["bid"], book["ask"]


async def test_each_grouping_is_its_own_chain(tmp_path: Path) -> None:
    fake = FakeBtse()
    oss = Oss()
    fake.scripts["/ws/oss/futures"] = oss
    async with fake.running():
        config = make_config(tmp_path, fake, MARKETS)
        async with collector(config) as daemon:
            await until(lambda: len(oss.subscribes) >= 2, "the grouping-2 gap resubscribed")
            await until(lambda: daemon.normalizer is not None and daemon.normalizer.stats.syncs >= 3, "resynced")
        assert oss.subscribes == [["update:BTC-PERP_0", "update:BTC-PERP_2"], ["update:BTC-PERP_2"]]
        unsubscribed = fake.by_path("/ws/oss/futures")[0].ops("unsubscribe")
        assert unsubscribed == [["update:BTC-PERP_2"]]

    con = store(tmp_path / "data")
    gaps = con.execute("SELECT topic, expected_seq, received_seq FROM events WHERE kind = 'gap'").fetchall()
    assert gaps == [("update:BTC-PERP_2", 4412, 4417)]
    assert [t for t, *_ in events(con, "resync")] == ["update:BTC-PERP_2"]
    # grouping 0: every frame applied (the other chain never looked like a gap of it)
    truth0: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for data in oss.sent[0]:
        apply(truth0, data)
    assert rebuilt(con, 0) == (truth0["bid"], truth0["ask"])
    # grouping 2: the fresh raw snapshot after the resync; before it, raw snapshot + grouped deltas
    assert rebuilt(con, 2) == ({86600.0: 10.0, 86599.9: 20.0, 86599.5: 30.0}, {86601.5: 31.0, 86600.4: 21.0, 86600.1: 11.0})
    before = con.execute(
        "SELECT price, amount FROM book_changes WHERE grouping = 2 AND seq = 4412 ORDER BY price"
    ).fetchall()
    assert before == [(86602.0, 0.0), (86603.0, 9.0)]
    assert con.execute("SELECT count(*) FROM book_changes WHERE grouping = 2 AND seq > 4412 AND NOT is_snapshot").fetchone() == (0,)
