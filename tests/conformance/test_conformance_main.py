"""Main endpoints (trades) against the scripted fake: reference §2.1-§2.3, §3.1.1, §3.3.1, §3.5.

- a topic BTSE does not serve is simply left out of the ack: recorded as an event, and not
  re-sent in a loop (one subscribe per session);
- trades: a batch of recent trades newest-first on subscribe, wire key order
  ``price,size,side,symbol,tradeId,timestamp``, the verbatim wire frame, the doc example, an
  unknown extra field, the legacy bare ``tradeHistoryApi`` topic with symbol ``BTCPFC``;
- the server drops the socket with no close frame (1006): the collector reconnects, BTSE re-sends
  the recent trades, every trade is stored once;
- the server's RFC 6455 ping frame is answered; the text ``ping`` gets the bare text ``pong``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, collector, events, store, until, write_config

WIRE_TRADE = '{"topic":"tradeHistoryApiV3:BTC-PERP","data":[{"price":86641.9,"size":70,"side":"SELL","symbol":"BTC-PERP","tradeId":57971633,"timestamp":1790134428345}]}'
DOC_SPOT_TRADE = '{\n"topic": "tradeHistoryApi:BTC-USD",\n"data": [\n{\n"symbol": "BTC-USD",\n"side": "SELL",\n"size": 0.007,\n"price": 5302.8,\n"tradeId": 118974855,\n"timestamp": 1584446020295\n}\n]\n}'
LEGACY_TRADE = '{"topic":"tradeHistoryApi","data":[{"price":117661.3,"size":13,"side":"BUY","symbol":"BTCPFC","tradeId":929934907,"timestamp":1759326050158}]}'

MARKETS = """  - product: futures
    symbols: [BTC-PERP, NOPE-PERP]
    channels: [trades]
  - product: spot
    symbols: [BTC-USD]
    channels: [trades]
"""


def trade(tid: int, price: float, size: int, side: str = "BUY") -> dict[str, Any]:
    # the wire key order
    return {
        "price": price,
        "size": size,
        "side": side,
        "symbol": "BTC-PERP",
        "tradeId": tid,
        "timestamp": 1790134428000 + tid % 1000,
    }


def batch(tids: list[int]) -> str:
    """Recent trades, newest first (as in the legacy capture)."""
    data = [trade(t, 86640.0 + t % 10, t % 7 + 1) for t in sorted(tids, reverse=True)]
    return json.dumps({"topic": "tradeHistoryApiV3:BTC-PERP", "data": data})


class FuturesMain:
    def __init__(self) -> None:
        self.recent = [57971634, 57971635]

    async def __call__(self, session: Session, msg: dict[str, Any]) -> None:
        if msg.get("op") != "subscribe" or not msg.get("args"):
            return
        args = msg["args"]
        served = [t for t in args if t == "tradeHistoryApiV3:BTC-PERP"]
        await session.send(ack("subscribe", served))  # NOPE-PERP: simply omitted
        if served:
            await session.send(batch(self.recent))
            if session.index == 0:
                await session.send(WIRE_TRADE)


async def spot_main(session: Session, msg: dict[str, Any]) -> None:
    if msg.get("op") == "subscribe" and msg.get("args"):
        await session.send(ack("subscribe", msg["args"]))
        await session.send(DOC_SPOT_TRADE)


async def test_trades_acks_and_connection_behaviour(tmp_path: Path) -> None:
    fake = FakeBtse()
    futures = FuturesMain()
    fake.scripts["/ws/futures"] = futures
    fake.scripts["/ws/spot"] = spot_main
    async with fake.running():
        config = write_config(tmp_path, fake, MARKETS, ping=1)
        async with collector(config) as daemon:
            sup, norm, proc = daemon.supervisor, daemon.normalizer, daemon.processor
            assert sup is not None and norm is not None and proc is not None
            proc.ack_tracker.grace = 0.1  # (default 2 s) how long a split ack may take
            conn = sup.connections["futures#0"]
            await until(
                lambda: (
                    len(fake.by_path("/ws/futures")) == 1
                    and norm.stats.frames >= fake.frames_sent() >= 4
                ),
                "first batch",
            )
            first = fake.by_path("/ws/futures")[0]
            # an RFC 6455 ping from the server (BTSE sends one now and then on main sockets)
            pong_waiter = await first.ws.ping(b"srv")
            await asyncio.wait_for(pong_waiter, 5)
            # the text heartbeat: "ping" answered by the bare text "pong"
            await until(lambda: conn.stats.pongs >= 1, "text pong received")
            # a new trade with a field BTSE might add, and the legacy bare-topic frame
            new = trade(57971636, 86650.5, 3, "SELL")
            new["isBlockTrade"] = False
            await first.send(json.dumps({"topic": "tradeHistoryApiV3:BTC-PERP", "data": [new]}))
            await first.send(LEGACY_TRADE)
            await until(lambda: norm.stats.frames >= fake.frames_sent(), "frames processed")
            # an abrupt drop: no close frame, the client sees 1006
            futures.recent = [57971633, 57971634, 57971635, 57971636, 57971637]
            first.abort()
            await until(
                lambda: (
                    len(fake.by_path("/ws/futures")) == 2
                    and conn.connected.is_set()
                    and norm.stats.frames >= fake.frames_sent()
                ),
                "reconnected, batch again",
            )
            second = fake.by_path("/ws/futures")[1]
            # a few heartbeats on the new session, still one subscribe for the omitted topic
            await until(lambda: sum(t == "ping" for t in second.received) >= 2, "pings go on")
            for session in fake.by_path("/ws/futures"):
                assert [
                    a for a in session.ops("subscribe") if "tradeHistoryApiV3:NOPE-PERP" in a
                ] == [["tradeHistoryApiV3:BTC-PERP", "tradeHistoryApiV3:NOPE-PERP"]]
            assert conn.stats.reasons.get("connection_lost") == 1

    con = store(tmp_path / "data")
    rows = con.execute(
        "SELECT product, symbol, id, side, price, amount, epoch_ms(timestamp) FROM trades "
        "ORDER BY product, id"
    ).fetchall()
    assert rows == [
        ("futures", "BTC-PERP", "57971633", "sell", 86641.9, 70.0, 1790134428345),
        ("futures", "BTC-PERP", "57971634", "buy", 86644.0, 1.0, 1790134428634),
        ("futures", "BTC-PERP", "57971635", "buy", 86645.0, 2.0, 1790134428635),
        ("futures", "BTC-PERP", "57971636", "sell", 86650.5, 3.0, 1790134428636),
        ("futures", "BTC-PERP", "57971637", "buy", 86647.0, 4.0, 1790134428637),
        ("futures", "BTC-PERP", "929934907", "buy", 117661.3, 13.0, 1759326050158),
        ("spot", "BTC-USD", "118974855", "sell", 5302.8, 0.007, 1584446020295),
    ]
    assert events(con, "decode_error") == []
    assert events(con, "spec_drift") == []  # the specs accept the real frames
    refused = events(con, "subscribe_refused")
    assert [(t, c) for t, c, _, _ in refused] == [
        ("tradeHistoryApiV3:NOPE-PERP", "futures#0"),
        ("tradeHistoryApiV3:NOPE-PERP", "futures#0"),
    ]
    assert "left out of the subscribe acknowledgement" in refused[0][2]
    # the 1006 drop is a disconnected event
    assert any(c == "futures#0" for _, c, _, _ in events(con, "disconnected"))
