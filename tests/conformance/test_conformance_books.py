"""Order books and L1 against the scripted fake: BTSE's wire habits from reference §2.3, §3.4, §3.6.

- the first snapshot arrives before the subscribe ack; one ack lists every topic, in another order;
- snapshots carry ``prevSeqNum = seqNum - 1``, bids best-first and asks worst-first (best last);
- deltas are unordered, one side carries more than 50 entries, many sizes are ``"0"``;
- prices keep trailing zeros (``"86626.0"``), futures sizes are integer-valued strings;
- the verbatim wire frames of SNDK-PERP and BTC-PERP;
- a gap resubscribes only that topic (unsubscribe + subscribe received by the server), the other
  books of the socket keep flowing; the fresh snapshot continues the seqNum chain;
- ``update:ETH-PERP-USDT_0``: snapshot on the subscribed string, deltas on ``update:ETH-PERP_0``
  with ``data.symbol`` ETH-PERP; its gap resubscribes the string that was subscribed;
- ``snapshotL1`` served on ``snapshotL1:BTC-PERP_0``, an L1 frame 14 s old keeps its timestamp,
  the legacy ``snapshotL1:ETHPFC`` is stored as ETH-PERP;
- unknown extra fields (BTSE adds fields) decode and are stored.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, apply, collector, events, rebuild, store, until
from btse_fake import write_config as make_config

# verbatim wire frames (reference §3.4.1)
SNDK_SNAPSHOT = '{"topic":"update:SNDK-PERP_0","data":{"bids":[["1876.90","44"],["1876.89","122"],["1876.87","35"]],"asks":[["1880.19","900"],["1880.00","450"],["1879.70","450"]],"seqNum":8896865,"prevSeqNum":8896864,"type":"snapshot","symbol":"SNDK-PERP","timestamp":1790134937297}}'
BTC_DELTA = '{"topic":"update:BTC-PERP_0","data":{"bids":[["86540.6","60672"],["86540.5","4400"]],"asks":[],"seqNum":86511210,"prevSeqNum":86511209,"type":"delta","symbol":"BTC-PERP","timestamp":1790133628076}}'
# verbatim wire L1 frames (reference §3.4.2) and the doc example of the grouped topic
ETHPFC_L1 = '{"topic":"snapshotL1:ETHPFC","data":{"bids":[["4386.37","8403"]],"asks":[["4386.58","8860"]],"type":"snapshotL1","symbol":"ETHPFC","timestamp":1759373840687}}'
BTC_L1_GROUPED = '{"topic":"snapshotL1:BTC-PERP_0","data":{"bids":[["28064.9","1268"]],"asks":[["28065.0","1015"]],"type":"snapshotL1","symbol":"BTC-PERP","timestamp":1680751558529}}'

MARKETS = """  - product: futures
    symbols: [BTC-PERP, SNDK-PERP]
    channels: [book, l1]
  - product: futures
    symbols: [ETH-PERP-USDT]
    channels: [book]
  - product: futures
    symbols: [ETHPFC]
    channels: [l1]
"""

TS = 1790133628000


def book_frame(
    topic: str, symbol: str, kind: str, seq: int, prev: int, bids: Any, asks: Any, ts: int = TS
) -> dict[str, Any]:
    # wire key order: bids, asks, seqNum, prevSeqNum, type, symbol, timestamp
    return {
        "topic": topic,
        "data": {
            "bids": bids,
            "asks": asks,
            "seqNum": seq,
            "prevSeqNum": prev,
            "type": kind,
            "symbol": symbol,
            "timestamp": ts,
        },
    }


def btc_snapshot() -> dict[str, Any]:
    bids = [[f"{86600.0 - 0.5 * i:.1f}", str(1000 + i)] for i in range(50)]
    asks = [[f"{86626.0 + 0.5 * i:.1f}", str(2000 + i)] for i in range(50)][::-1]  # worst first
    return book_frame("update:BTC-PERP_0", "BTC-PERP", "snapshot", 86511209, 86511208, bids, asks)


def btc_big_delta(rng: random.Random) -> dict[str, Any]:
    """63 bid entries (43 deletions of held levels + 20 new), shuffled; asks unordered too."""
    deletes = [[f"{86600.0 - 0.5 * i:.1f}", "0"] for i in range(43)]
    adds = [[f"{86520.0 - 0.1 * i:.1f}", str(7 + i)] for i in range(20)]
    bids = deletes + adds
    rng.shuffle(bids)
    asks = [["86630.0", "0"], ["86626.0", "555"], ["86700.0", "1"], ["86627.5", "0"]]
    frame = book_frame("update:BTC-PERP_0", "BTC-PERP", "delta", 86511211, 86511210, bids, asks)
    frame["data"]["checksum"] = 12345  # an unknown field BTSE might add
    frame["newTopLevelField"] = "x"
    return frame


class Script:
    """The OSS futures server: snapshots first, then one ack for every topic (reversed)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}  # symbol -> frames sent, for the truth
        self.sndk_seq = 8896865

    def send_book(self, session: Session, frame: dict[str, Any] | str) -> Any:
        data = json.loads(frame) if isinstance(frame, str) else frame
        self.sent.setdefault(data["data"]["symbol"], []).append(data["data"])
        return session.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def __call__(self, session: Session, msg: dict[str, Any]) -> None:
        op, args = msg.get("op"), msg.get("args")
        if op == "unsubscribe":
            await session.send(ack("unsubscribe", args))
            return
        if op != "subscribe" or not args:
            return
        first = not session.state.get("subscribed")
        session.state["subscribed"] = True
        for topic in args:  # the first snapshot arrives before the ack (§2.3)
            if topic == "update:SNDK-PERP_0":
                if first:
                    await self.send_book(session, SNDK_SNAPSHOT)
                else:  # resubscribe: a fresh snapshot, the seqNum chain just continues
                    seq = self.sndk_seq + 1
                    await self.send_book(
                        session,
                        book_frame(
                            topic,
                            "SNDK-PERP",
                            "snapshot",
                            seq,
                            seq - 1,
                            [["1877.00", "10"], ["1876.90", "44"]],
                            [["1880.00", "450"], ["1879.70", "5"]],
                        ),
                    )
                    self.sndk_seq = seq
            elif topic == "update:BTC-PERP_0":
                await self.send_book(session, btc_snapshot())
            elif topic == "update:ETH-PERP-USDT_0":  # folded spelling: snapshot on this string
                seq = session.state.get("eth_seq", 500)
                await self.send_book(
                    session,
                    book_frame(
                        topic,
                        "ETH-PERP",
                        "snapshot",
                        seq,
                        seq - 1,
                        [["2766.67", "165900"], ["2766.50", "100"]],
                        [["2767.00", "10"], ["2766.68", "2366"]],
                    ),
                )
                session.state["eth_seq"] = seq
        await session.send(ack("subscribe", list(reversed(args))))


async def test_books_and_l1_as_btse_sends_them(tmp_path: Path) -> None:
    fake = FakeBtse()
    script = Script()
    fake.scripts["/ws/oss/futures"] = script
    rng = random.Random(3)
    async with fake.running():
        config = make_config(tmp_path, fake, MARKETS)
        async with collector(config) as daemon:
            assert daemon.ready.is_set()  # acks were understood despite order and timing
            norm = daemon.normalizer
            assert norm is not None
            oss = fake.by_path("/ws/oss/futures")
            assert len(oss) == 1
            session = oss[0]
            subscribed = session.ops("subscribe")
            assert sorted(subscribed[0]) == sorted(
                [
                    "update:BTC-PERP_0",
                    "update:SNDK-PERP_0",
                    "update:ETH-PERP-USDT_0",
                    "snapshotL1:BTC-PERP",
                    "snapshotL1:SNDK-PERP",
                    "snapshotL1:ETHPFC",
                ]
            )

            def seq(symbol: str) -> int:
                book = norm.books.get(("futures", symbol, 0))
                return book.last_seq if book is not None else -1

            await until(
                lambda: (
                    seq("BTC-PERP") == 86511209
                    and seq("SNDK-PERP") == 8896865
                    and seq("ETH-PERP") == 500
                ),
                "three snapshots applied",
            )
            # BTC-PERP: the verbatim wire delta, then a big unordered delta
            await script.send_book(session, BTC_DELTA)
            await script.send_book(session, btc_big_delta(rng))
            await until(lambda: seq("BTC-PERP") == 86511211, "BTC-PERP deltas applied")
            # SNDK-PERP: one delta, then a gap -> only SNDK is resubscribed
            await script.send_book(
                session,
                book_frame(
                    "update:SNDK-PERP_0",
                    "SNDK-PERP",
                    "delta",
                    8896866,
                    8896865,
                    [["1876.89", "0"]],
                    [["1879.70", "300"]],
                ),
            )
            script.sndk_seq = 8896870
            await session.send(
                book_frame(  # prevSeqNum 8896869 != 8896866: a gap
                    "update:SNDK-PERP_0",
                    "SNDK-PERP",
                    "delta",
                    8896870,
                    8896869,
                    [["1876.00", "1"]],
                    [],
                )
            )
            await until(
                lambda: (
                    ["update:SNDK-PERP_0"] in session.ops("unsubscribe")
                    and seq("SNDK-PERP") == 8896871
                ),
                "SNDK resubscribed and re-synced",
            )
            # ETH-PERP-USDT: deltas come on update:ETH-PERP_0 with data.symbol ETH-PERP
            await script.send_book(
                session,
                book_frame(
                    "update:ETH-PERP_0",
                    "ETH-PERP",
                    "delta",
                    501,
                    500,
                    [["2766.60", "7"]],
                    [["2767.00", "0"]],
                ),
            )
            await until(lambda: seq("ETH-PERP") == 501, "ETH-PERP delta on the folded topic")
            session.state["eth_seq"] = 510
            await session.send(
                book_frame(
                    "update:ETH-PERP_0", "ETH-PERP", "delta", 505, 504, [["2766.61", "7"]], []
                )
            )
            await until(
                lambda: (
                    ["update:ETH-PERP-USDT_0"] in session.ops("unsubscribe")
                    and seq("ETH-PERP") == 510
                ),
                "ETH-PERP-USDT resubscribed by its own string",
            )
            # BTC-PERP was never touched: its chain goes on
            await script.send_book(
                session,
                book_frame(
                    "update:BTC-PERP_0",
                    "BTC-PERP",
                    "delta",
                    86511212,
                    86511211,
                    [["86540.6", "0"]],
                    [["86626.0", "556"]],
                ),
            )
            await until(lambda: seq("BTC-PERP") == 86511212, "BTC-PERP still live")
            # L1: grouped topic served identically, a 14 s old frame, legacy ETHPFC
            stale_ts = TS - 14_000
            await session.send(BTC_L1_GROUPED)
            await session.send(ETHPFC_L1)
            await session.send(
                {
                    "topic": "snapshotL1:SNDK-PERP",
                    "data": {
                        "bids": [["1877.00", "10"]],
                        "asks": [["1879.70", "300"]],
                        "type": "snapshotL1",
                        "symbol": "SNDK-PERP",
                        "timestamp": stale_ts,
                        "extra": True,
                    },
                }
            )
            await until(lambda: norm.stats.frames == fake.frames_sent(), "every frame processed")

            def streams() -> dict[str, str]:
                daemon._observe(time.time())  # what the 1 s health tick does
                return {r.key.topic: r.state for r in daemon.health.evaluate().streams}

            # every configured stream is live, those of a legacy or folded spelling too
            # (rows carry the canonical symbol; health maps the config spelling to it)
            await until(
                lambda: (
                    streams()
                    == dict.fromkeys(
                        [
                            "update:BTC-PERP_0",
                            "snapshotL1:BTC-PERP",
                            "update:SNDK-PERP_0",
                            "snapshotL1:SNDK-PERP",
                            "update:ETH-PERP-USDT_0",
                            "snapshotL1:ETHPFC",
                        ],
                        "live",
                    )
                ),
                lambda: f"every stream live: {streams()}",
                3,
            )

        # -- the server saw exactly the resubscriptions BTSE's rule asks for ----------------
        assert len(fake.by_path("/ws/oss/futures")) == 1  # no reconnect for a gap
        assert session.ops("unsubscribe") == [["update:SNDK-PERP_0"], ["update:ETH-PERP-USDT_0"]]
        assert session.ops("subscribe")[1:] == [["update:SNDK-PERP_0"], ["update:ETH-PERP-USDT_0"]]

    con = store(tmp_path / "data")
    # -- every book rebuilt from book_changes equals the reference algorithm on the frames --
    for symbol in ("BTC-PERP", "SNDK-PERP", "ETH-PERP"):
        truth: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
        for data in script.sent[symbol]:
            apply(truth, data)
        bids, asks, last = rebuild(con, "futures", symbol)
        assert bids == truth["bid"], symbol
        assert asks == truth["ask"], symbol
        assert last == script.sent[symbol][-1]["seqNum"], symbol
    # the gap deltas themselves were not stored; stored symbols are canonical
    assert con.execute("SELECT DISTINCT symbol FROM book_changes ORDER BY 1").fetchall() == [
        ("BTC-PERP",),
        ("ETH-PERP",),
        ("SNDK-PERP",),
    ]
    assert con.execute(
        "SELECT count(*) FROM book_changes WHERE seq IN (8896870, 505)"
    ).fetchall() == [(0,)]
    # trailing zeros and integer-valued contract sizes are exact numbers
    assert con.execute(
        "SELECT amount FROM book_changes WHERE symbol = 'BTC-PERP' AND price = 86626.0 "
        "ORDER BY seq DESC LIMIT 1"
    ).fetchall() == [(556.0,)]
    # best bid/ask of the BTC-PERP snapshot (asks came worst-first)
    top = con.execute(
        "SELECT bid_price, ask_price FROM quotes WHERE source = 'book' AND symbol = 'BTC-PERP' "
        "ORDER BY local_timestamp LIMIT 1"
    ).fetchall()
    assert top == [(86600.0, 86626.0)]
    # gaps recorded, only for the two books that had one
    assert sorted(s for _, _, _, s in events(con, "gap")) == ["ETH-PERP", "SNDK-PERP"]
    synced = dict(
        con.execute(
            "SELECT symbol, count(*) FROM events WHERE kind = 'synced' GROUP BY 1"
        ).fetchall()
    )
    assert synced == {"BTC-PERP": 1, "SNDK-PERP": 2, "ETH-PERP": 2}
    assert events(con, "decode_error") == []
    assert events(con, "spec_drift") == []  # the specs accept the real frames
    assert events(con, "subscribe_refused") == []  # every ack (also of resyncs) was understood
    # L1 rows keep their own timestamps (a 14 s old one is not replaced by arrival time)
    l1 = con.execute(
        "SELECT symbol, epoch_ms(timestamp), bid_price, ask_price FROM quotes "
        "WHERE source = 'l1' ORDER BY symbol"
    ).fetchall()
    assert l1 == [
        ("BTC-PERP", 1680751558529, 28064.9, 28065.0),
        ("ETH-PERP", 1759373840687, 4386.37, 4386.58),
        ("SNDK-PERP", TS - 14_000, 1877.0, 1879.7),
    ]
