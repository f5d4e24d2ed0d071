"""BTSE's doc example books are crossed (reference §5.12: the futures update example's best ask
122133.3 is below its best bid 122160.1). A server that keeps answering with such a snapshot
must not drive the collector into a resubscribe hot loop: BTSE's rule (resubscribe a crossed
book) is followed with a growing delay per topic, and the other topics are untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, collector, events, store, until, write_config

DOC_CROSSED = """{
  "topic": "update:BTC-PERP_0",
  "data": {
    "bids": [["122160.1", "69350"], ["122159.9", "226150"], ["122159.5", "63050"],
             ["122159.3", "109800"], ["122159.2", "104050"]],
    "asks": [["122133.3", "1000"], ["122124.0", "343410"], ["122123.9", "78500"],
             ["122123.8", "98500"]],
    "seqNum": 628282,
    "prevSeqNum": 628281,
    "type": "snapshot",
    "timestamp": 1565135165600,
    "symbol": "BTC-PERP"
  }
}"""
SNDK = '{"topic":"update:SNDK-PERP_0","data":{"bids":[["1876.90","44"]],"asks":[["1879.70","450"]],"seqNum":8896865,"prevSeqNum":8896864,"type":"snapshot","symbol":"SNDK-PERP","timestamp":1790134937297}}'

MARKETS = """  - product: futures
    symbols: [BTC-PERP, SNDK-PERP]
    channels: [book]
"""


async def always_crossed(session: Session, msg: dict[str, Any]) -> None:
    op, args = msg.get("op"), msg.get("args")
    if not args:
        return
    await session.send(ack(op, args))
    if op == "subscribe":
        for topic in args:
            await session.send(DOC_CROSSED if topic == "update:BTC-PERP_0" else SNDK)


async def test_a_book_that_stays_crossed_is_not_resubscribed_in_a_hot_loop(tmp_path: Path) -> None:
    fake = FakeBtse()
    fake.scripts["/ws/oss/futures"] = always_crossed
    async with (
        fake.running(),
        collector(write_config(tmp_path, fake, MARKETS, ping=1)) as daemon,
    ):
        norm = daemon.normalizer
        assert norm is not None
        await until(lambda: norm.stats.crossed >= 2, "crossed detected again after a resubscribe")
        session = fake.by_path("/ws/oss/futures")[0]
        # three heartbeats (1 s apart) later the topic was resubscribed only a few times
        await until(lambda: sum(t == "ping" for t in session.received) >= 3, "3 pings")
        resubscribes = session.ops("subscribe")[1:]
        assert all(args == ["update:BTC-PERP_0"] for args in resubscribes)
        assert 2 <= len(resubscribes) <= 6, len(resubscribes)
        assert len(fake.by_path("/ws/oss/futures")) == 1
        assert norm.books[("futures", "SNDK-PERP", 0)].state.value == "live"

    con = store(tmp_path / "data")
    crossed = events(con, "crossed")
    assert crossed and {s for _, _, _, s in crossed} == {"BTC-PERP"}
