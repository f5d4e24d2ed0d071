"""Heartbeat and liveness with the shipped defaults (reference §2.2, §2.7, §3.6).

BTSE: text ``ping`` every 15 s, bare text ``pong`` back in ~100 ms; no heartbeat on a quiet book
(silences of 11.6 s seen); the probe's advice is to treat 45 s without ANY frame (pongs count) as
dead. A socket whose book is quiet but whose pongs come back must not be replaced, however long
the silence; one whose pongs stop must be.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from btse_fake import FakeBtse, Session, ack, until

from collector.config import load_config
from collector.config.model import DEFAULT_MAX_SILENCE_S
from collector.feed.connection import Connection, ConnEvent
from collector.feed.topics import SubscribeFrames
from collector.service.daemon import connection_settings

SNAPSHOT = '{"topic":"update:SNDK-PERP_0","data":{"bids":[["1876.90","44"]],"asks":[["1879.70","450"]],"seqNum":8896865,"prevSeqNum":8896864,"type":"snapshot","symbol":"SNDK-PERP","timestamp":1790134937297}}'


class Sink:
    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.events: list[ConnEvent] = []

    def put_frame(self, conn_id: str, server: str, data: str | bytes, local_ts_us: int) -> None:
        self.frames.append(data)

    def put_event(self, event: ConnEvent) -> None:
        self.events.append(event)


class ScaledTime:
    """Fake seconds that pass 100x faster than real ones: a pong (~1 ms on loopback) still
    arrives long before the 10 s pong deadline, and minutes of silence take about a second."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay / 100)
        self.now += delay


async def quiet_book(session: Session, msg: dict[str, Any]) -> None:
    if msg.get("op") == "subscribe" and msg.get("args"):
        await session.send(SNAPSHOT)  # one snapshot, then the book is silent
        await session.send(ack("subscribe", msg["args"]))


def default_settings(tmp_path: Path) -> Any:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"data_dir: {tmp_path}\nmarkets:\n  - product: futures\n    symbols: [SNDK-PERP]\n    channels: [book]\n"
    )
    return load_config(path), connection_settings(load_config(path))


def test_default_thresholds_follow_the_reference(tmp_path: Path) -> None:
    config, s = default_settings(tmp_path)
    assert s.ping_interval == 15.0  # BTSE: every 15 s; the server drops a socket idle 60 s
    assert s.stale_after == 45.0  # the probe: 45 s without any frame is dead
    assert s.pong_timeout < s.stale_after
    # a quiet book (11.6 s without a frame on the wire) is not a stale stream
    assert DEFAULT_MAX_SILENCE_S["book"] >= 45 and DEFAULT_MAX_SILENCE_S["l1"] >= 45
    assert config.health.threshold("futures", "book", "SNDK-PERP") >= 45


async def run_for(fake: FakeBtse, s: Any, fake_seconds: float) -> tuple[Connection, Sink]:
    time = ScaledTime()
    sink = Sink()
    conn = Connection(
        "futures_oss#0",
        "futures_oss",
        fake.urls()["futures_oss"],
        ["update:SNDK-PERP_0"],
        sink,
        SubscribeFrames(),
        settings=s,
        clock=time.clock,
        sleep=time.sleep,
    )
    task = asyncio.create_task(conn.run())
    try:
        await until(lambda: time.now >= 1000.0 + fake_seconds, "fake time passed", timeout=20)
    finally:
        await conn.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return conn, sink


async def test_a_quiet_book_with_pongs_stays_connected(tmp_path: Path) -> None:
    _, s = default_settings(tmp_path)
    fake = FakeBtse()
    fake.scripts["/ws/oss/futures"] = quiet_book
    async with fake.running():
        conn, sink = await run_for(fake, s, 130.0)  # > 2 x stale_after, > the server's 60 s
    session = fake.by_path("/ws/oss/futures")
    assert len(session) == 1  # never replaced
    assert sum(t == "ping" for t in session[0].received) >= 7  # every 15 s
    assert conn.stats.pongs >= 7 and conn.stats.frames == 2  # pongs are not data frames
    assert [e.kind for e in sink.events if e.kind == "stale"] == []
    assert json.loads(sink.frames[0])["data"]["type"] == "snapshot"


async def test_a_socket_whose_pongs_stop_is_replaced(tmp_path: Path) -> None:
    _, s = default_settings(tmp_path)
    fake = FakeBtse()
    fake.scripts["/ws/oss/futures"] = quiet_book
    fake.answer_pings = False
    async with fake.running():
        conn, sink = await run_for(fake, s, 60.0)
    assert conn.stats.reasons.get("stale", 0) >= 1
    stale = [e for e in sink.events if e.kind == "stale"]
    assert stale and "deadline 10.0s" in stale[0].detail  # 15 s ping + 10 s without pong
    assert len(fake.by_path("/ws/oss/futures")) >= 2


async def test_permessage_deflate_offering_server(tmp_path: Path) -> None:
    """BTSE negotiates ``permessage-deflate; client_max_window_bits=15`` only when the client
    offers it; it is not forced. The collector does not offer it (CPU over bandwidth), so a
    deflate-capable server sends plain JSON text and the frames arrive intact."""
    _, s = default_settings(tmp_path)
    fake = FakeBtse()  # serves with compression="deflate" (negotiated when offered)
    fake.scripts["/ws/oss/futures"] = quiet_book
    async with fake.running():
        _, sink = await run_for(fake, s, 1.0)
    assert fake.handshake_extensions[0] is None  # nothing offered, nothing negotiated
    assert sink.frames[0] == SNAPSHOT
