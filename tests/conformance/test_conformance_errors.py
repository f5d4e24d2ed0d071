"""OSS error frames against the scripted fake (reference §2.5, §2.6, §3.2.1).

- current format (``errors[].error.code``) for 1000/1005, 1001 without ``arg``, 1002, an entry
  without a code, and the pre-June-2023 format (``error[].errorCode`` = MARKET_PAIR_NOT_SUPPORT):
  each one an ``error`` event, nothing stops, the good books keep flowing;
- the doc's pretty-printed spot snapshot (asks worst-first) and its delta on the pre-2023 topic
  ``update:BTC-USD`` (no grouping);
- 1007 "User message buffer is full." then an abrupt close: the topics are spread over two
  connections, every topic subscribed exactly once on the live sockets, every book re-synced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, collector, events, store, until, write_config

DOC_SNAPSHOT = """{
  "topic": "update:BTC-USD_0",
  "data": {
    "bids": [["59252.5", "0.06865"], ["59249.0", "0.24000"], ["59235.5", "0.16073"],
             ["59235.0", "0.26626"], ["59233.0", "0.50000"]],
    "asks": [["59292.0", "0.50000"], ["59285.5", "0.24000"], ["59285.0", "0.15598"],
             ["59282.5", "0.06829"], ["59278.5", "0.01472"]],
    "seqNum": 628282,
    "prevSeqNum": 628281,
    "type": "snapshot",
    "timestamp": 1565135165600,
    "symbol": "BTC-USD"
  }
}"""
DOC_DELTA = """{
  "topic": "update:BTC-USD",
  "data": {
    "bids": [],
    "asks": [["59367.5", "2.15622"], ["59325.5", "0"]],
    "seqNum": 628283,
    "prevSeqNum": 628282,
    "type": "delta",
    "timestamp": 1565135165600,
    "symbol": "BTC-USD"
  }
}"""
ERRORS_1000 = '{"severity":"ERROR","errors":[{"arg":"update:NOPE-USD_0","error":{"code":1000,"message":"Market pair provided is currently not supported."}}]}'
WIRE_1005_1000 = '{"severity":"ERROR","errors":[{"arg":"foo:BTC-USD","error":{"code":1005,"message":"Topic provided does not exist."}},{"arg":"update:NOPE-PERP_0","error":{"code":1000,"message":"Market pair provided is currently not supported."}}]}'
WIRE_1001 = '{"severity":"ERROR","errors":[{"error":{"code":1001,"message":"Operation provided is currently not supported"}}]}'
ERROR_1002 = '{"severity":"ERROR","errors":[{"error":{"code":1002,"message":"Invalid request. Please check again your request and provide all information required."}}]}'
CODELESS = '{"severity":"ERROR","errors":[{"arg":"update:NOPE-USD_0","error":{"message":"Something new"}}]}'
OLD_FORMAT = """{
    "severity": "ERROR",
    "error": [
        {
            "arg": "update:BTCC-USD_0",
            "errorCode": "MARKET_PAIR_NOT_SUPPORT"
        }
    ]
}"""
ERROR_1007 = '{"severity":"ERROR","errors":[{"error":{"code":1007,"message":"User message buffer is full."}}]}'

MARKETS = """  - product: spot
    symbols: [BTC-USD, ETH-USD, NOPE-USD]
    channels: [book, l1]
"""


def eth_snapshot(seq: int) -> str:
    return json.dumps(
        {
            "topic": "update:ETH-USD_0",
            "data": {
                "bids": [["2766.50", "1.00000"]],
                "asks": [["2767.00", "2.00000"]],
                "seqNum": seq,
                "prevSeqNum": seq - 1,
                "type": "snapshot",
                "symbol": "ETH-USD",
                "timestamp": 1790134133193,
            },
        }
    )


class SpotOss:
    def __init__(self) -> None:
        self.snapshots = 0

    async def __call__(self, session: Session, msg: dict[str, Any]) -> None:
        op, args = msg.get("op"), msg.get("args")
        if op == "unsubscribe" and args:
            await session.send(ack("unsubscribe", args))
            return
        if op != "subscribe" or not args:
            return
        bad = [t for t in args if "NOPE" in t]
        if bad:
            await session.send(ERRORS_1000.replace("update:NOPE-USD_0", bad[0]))
        await session.send(ack("subscribe", [t for t in args if t not in bad]))
        for topic in args:
            if topic == "update:BTC-USD_0":
                await session.send(DOC_SNAPSHOT)
                self.snapshots += 1
            elif topic == "update:ETH-USD_0":
                await session.send(eth_snapshot(900 + self.snapshots))
                self.snapshots += 1


def net_topics(session: Session) -> set[str]:
    topics: set[str] = set()
    for text in session.received:
        if text.startswith("{"):
            msg = json.loads(text)
            if msg.get("op") == "subscribe":
                topics.update(msg["args"])
            elif msg.get("op") == "unsubscribe":
                topics.difference_update(msg["args"])
    return topics


async def test_error_frames_and_1007(tmp_path: Path) -> None:
    fake = FakeBtse()
    fake.scripts["/ws/oss/spot"] = SpotOss()
    async with fake.running():
        config = write_config(tmp_path, fake, MARKETS)
        async with collector(config) as daemon:
            sup, norm, proc = daemon.supervisor, daemon.normalizer, daemon.processor
            assert sup is not None and norm is not None and proc is not None
            proc.ack_tracker.grace = 0.1  # (default 2 s) how long a split ack may take
            await until(lambda: norm.stats.frames >= fake.frames_sent() >= 4, "subscribed")
            first = fake.by_path("/ws/oss/spot")[0]
            for frame in (DOC_DELTA, WIRE_1005_1000, WIRE_1001, ERROR_1002, CODELESS, OLD_FORMAT):
                await first.send(frame)
            await until(lambda: norm.stats.frames >= fake.frames_sent(), "errors processed")
            assert norm.books[("spot", "BTC-USD", 0)].last_seq == 628283
            assert len(sup.connections) == 1  # no error so far needs another connection
            await first.send(ERROR_1007)
            first.abort()  # BTSE closes the connection after 1007

            def spread() -> bool:
                live = [s for s in fake.by_path("/ws/oss/spot") if s.ws.state.name == "OPEN"]
                nets = [net_topics(s) for s in live]
                return (
                    len(sup.connections) == 2
                    and len(live) == 2
                    and not (nets[0] & nets[1])
                    and len(nets[0] | nets[1]) == 6
                    and all(c.connected.is_set() for c in sup.connections.values())
                )

            await until(spread, "topics spread over two connections")
            await until(
                lambda: all(
                    norm.books[("spot", s, 0)].state.value == "live" for s in ("BTC-USD", "ETH-USD")
                ),
                "books live again",
            )

    con = store(tmp_path / "data")
    errors = [_detail(d) | {"topic": t} for t, _, d, _ in events(con, "error") if d.startswith("{")]
    codes = [(e["code"], e["topic"]) for e in errors]
    assert (1000, "update:NOPE-USD_0") in codes
    assert (1005, "foo:BTC-USD") in codes and (1000, "update:NOPE-PERP_0") in codes
    assert (1001, None) in codes and (1002, None) in codes and (1007, None) in codes
    assert (None, "update:NOPE-USD_0") in codes  # an entry without a code is still an event
    old = [e for e in errors if e["topic"] == "update:BTCC-USD_0"]
    assert old and old[0]["message"] == "MARKET_PAIR_NOT_SUPPORT"
    assert events(con, "decode_error") == []
    # the doc delta (topic without grouping) continued the doc snapshot
    asks = con.execute(
        "SELECT price, amount FROM book_changes WHERE symbol = 'BTC-USD' AND seq = 628283 "
        "ORDER BY price"
    ).fetchall()
    assert asks == [(59325.5, 0.0), (59367.5, 2.15622)]
    # the unsupported market never delivers: refused once per subscribe, not retried in a loop
    refused = {t for t, _, _, _ in events(con, "subscribe_refused")}
    assert refused == {"update:NOPE-USD_0", "snapshotL1:NOPE-USD"}


def _detail(text: str) -> dict[str, Any]:
    """The detail of an exchange error event is JSON (schemas/events.yaml)."""
    return dict(json.loads(text))
