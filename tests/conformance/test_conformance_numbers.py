"""Numbers as a JSON/float64 serializer writes them (reference §3.1.1: trade price and size are
JSON numbers, i.e. doubles). A double's shortest text can need 16 or 17 significant digits
(``0.30000000000000004``, ``0.5488135039273248``); that text converts back to the very same
float64, so storing it is exact. Such frames must be stored, not refused (a refused book delta
would turn into a gap and a resubscription on every frame)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, collector, events, store, until, write_config

MARKETS = """  - product: spot
    symbols: [BTC-USD]
    channels: [book, trades]
"""
SIZE, PRICE, LEVEL = 0.5488135039273248, 86641.90000000001, 0.30000000000000004


def book(kind: str, seq: int, asks: list[list[str]]) -> str:
    return json.dumps(
        {
            "topic": "update:BTC-USD_0",
            "data": {
                "bids": [["59252.5", "0.06865"]],
                "asks": asks,
                "seqNum": seq,
                "prevSeqNum": seq - 1,
                "type": kind,
                "timestamp": 1565135165600,
                "symbol": "BTC-USD",
            },
        }
    )


async def spot(session: Session, msg: dict[str, Any]) -> None:
    if msg.get("op") != "subscribe" or not msg.get("args"):
        return
    await session.send(ack("subscribe", msg["args"]))
    if session.path == "/ws/oss/spot":
        await session.send(book("snapshot", 10, [["59292.0", "0.50000"]]))
        await session.send(book("delta", 11, [["59293.0", repr(LEVEL)]]))
        await session.send(book("delta", 12, [["59294.0", "1.5"]]))
    else:
        trade = {
            "symbol": "BTC-USD",
            "side": "BUY",
            "size": SIZE,
            "price": PRICE,
            "tradeId": 7,
            "timestamp": 1584446020295,
        }
        await session.send(json.dumps({"topic": "tradeHistoryApi:BTC-USD", "data": [trade]}))


async def test_shortest_double_texts_are_stored_exactly(tmp_path: Path) -> None:
    fake = FakeBtse()
    fake.scripts["/ws/oss/spot"] = spot
    fake.scripts["/ws/spot"] = spot
    async with fake.running(), collector(write_config(tmp_path, fake, MARKETS)) as daemon:
        norm = daemon.normalizer
        assert norm is not None
        await until(lambda: norm.stats.frames >= fake.frames_sent() >= 6, "frames processed")
    con = store(tmp_path / "data")
    assert events(con, "decode_error") == []
    assert events(con, "gap") == []
    assert con.execute("SELECT price, amount FROM trades").fetchall() == [(PRICE, SIZE)]
    assert con.execute("SELECT seq, amount FROM book_changes WHERE price = 59293.0").fetchall() == [
        (11, LEVEL)
    ]
