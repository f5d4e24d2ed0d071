"""Every fault, observed with a raw websockets client."""

from __future__ import annotations

import json

import pytest
from sim_helpers import (
    FakeClock,
    apply,
    as_book,
    client,
    recv_json,
    recv_until,
    send,
    subscribe,
    truth_dict,
)
from websockets.exceptions import ConnectionClosed

from collector.simulator import FaultSpecError, Simulator, parse_fault


async def _book_stream(sim: Simulator, ws: object, symbol: str = "BTC-USD") -> dict:
    await subscribe(ws, f"update:{symbol}_0")  # type: ignore[arg-type]
    return (await recv_json(ws))["data"]  # type: ignore[arg-type]


async def _resubscribe_matches_truth(sim: Simulator, ws: object, product: str, symbol: str) -> None:
    await send(ws, {"op": "unsubscribe", "args": [f"update:{symbol}_0"]})  # type: ignore[arg-type]
    await recv_until(ws, lambda m: m.get("event") == "unsubscribe")  # type: ignore[arg-type]
    await subscribe(ws, f"update:{symbol}_0")  # type: ignore[arg-type]
    snap = (await recv_until(ws, lambda m: m.get("data", {}).get("type") == "snapshot"))["data"]  # type: ignore[arg-type]
    assert snap["seqNum"] == sim.truth.last_seq(product, symbol)
    assert as_book(snap) == truth_dict(sim.truth.book(product, symbol))


async def test_gap_is_visible_and_resubscribe_heals(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        snap = await _book_stream(sim, ws)
        sim.tick(3, product="spot", symbol="BTC-USD")
        last = sim.truth.last_seq("spot", "BTC-USD")
        await recv_until(ws, lambda m: m["data"]["seqNum"] == last)
        assert sim.inject("gap", product="spot", symbol="BTC-USD") == 1
        sim.tick(3, product="spot", symbol="BTC-USD")
        nxt = (await recv_until(ws, lambda m: m["topic"] == "update:BTC-USD_0"))["data"]
        assert nxt["prevSeqNum"] != last and nxt["prevSeqNum"] == last + 1  # seq last+1 was lost
        record = [f for f in sim.truth.faults if f.kind == "gap"]
        assert record and record[0].seq == last + 1 and snap["seqNum"] < last
        await _resubscribe_matches_truth(sim, ws, "spot", "BTC-USD")


async def test_dup_resends_an_old_delta(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await _book_stream(sim, ws)
        sim.tick(2, product="spot", symbol="BTC-USD")
        last = sim.truth.last_seq("spot", "BTC-USD")
        first = await recv_until(ws, lambda m: m["data"]["seqNum"] == last)
        sim.inject("dup", product="spot", symbol="BTC-USD")
        again = await recv_json(ws)
        assert again == first


async def test_crossed_delta_crosses_the_book_but_not_the_truth(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        snap = await _book_stream(sim, ws)
        book = as_book(snap)
        before = sim.truth.book("spot", "BTC-USD")
        sim.inject("crossed", product="spot", symbol="BTC-USD")
        msg = (await recv_json(ws))["data"]
        assert msg["prevSeqNum"] == snap["seqNum"] and msg["seqNum"] == snap["seqNum"] + 1
        apply(book, msg)
        assert max(map(float, book["bids"])) >= min(map(float, book["asks"]))
        after = sim.truth.book("spot", "BTC-USD")
        assert after.seq == msg["seqNum"] and (after.bids, after.asks) == (before.bids, before.asks)
        await _resubscribe_matches_truth(sim, ws, "spot", "BTC-USD")


async def test_disconnect_is_abrupt(sim: Simulator) -> None:
    async with client(sim.url("futures_oss")) as ws:
        await _book_stream(sim, ws, "BTC-PERP")
        assert sim.inject("disconnect", product="futures") == 1
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is None
    assert any(f.kind == "disconnect" for f in sim.truth.faults)


async def test_stall_silences_frames_and_pongs(sim: Simulator, mono: FakeClock) -> None:
    async with client(sim.url("spot_oss")) as ws:
        snap = await _book_stream(sim, ws)
        sim.inject("stall", product="spot", seconds=30)
        await send(ws, "ping")
        await sim.wait_for(lambda: sim.counters.get("inbound_ignored_stalled", 0) >= 1)
        sim.tick(5, product="spot", symbol="BTC-USD")
        mono.advance(31)
        await send(ws, "ping")
        assert await ws.recv() == "pong"  # the ping sent during the stall got nothing
        sim.tick(1, product="spot", symbol="BTC-USD")
        nxt = (await recv_json(ws))["data"]
        assert nxt["prevSeqNum"] > snap["seqNum"]  # the stalled deltas never arrived


async def test_malformed_frames(sim: Simulator) -> None:
    from collector.errors import SpecValidationError

    async with client(sim.url("spot_oss")) as ws:
        await _book_stream(sim, ws)
        sim.inject("malformed", product="spot")
        bad = await ws.recv()
        with pytest.raises(ValueError):
            json.loads(bad)
        frame = json.loads(await ws.recv())
        with pytest.raises(SpecValidationError):
            sim.registry.validate(sim.registry.channel("spot", "book"), frame)


async def test_error1007_then_close(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await _book_stream(sim, ws)
        sim.inject("error1007", product="spot")
        err = await recv_json(ws)
        assert err["errors"][0]["error"] == {"code": 1007, "message": "User message buffer is full."}
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_buffer_full_gives_1007(mono: FakeClock) -> None:
    async with Simulator(seed=3, symbols={"spot": ["BTC-USD"]}, rate=0, max_buffer=50,
                         monotonic=mono) as sim, client(sim.url("spot_oss")) as ws:
        await _book_stream(sim, ws)
        sim.tick(500)
        got = await recv_until(ws, lambda m: "errors" in m)
        assert got["errors"][0]["error"]["code"] == 1007
        assert sim.counters["buffer_full"] == 1


async def test_slow_delays_each_frame(sim: Simulator, mono: FakeClock) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await _book_stream(sim, ws)
        sim.inject("slow", product="spot", seconds=60, delay=0.001)
        sent = sim.counters.get("frames_sent", 0)
        sim.tick(5, product="spot", symbol="BTC-USD")
        last = sim.truth.last_seq("spot", "BTC-USD")
        await recv_until(ws, lambda m: m["data"]["seqNum"] == last)
        assert sim.counters["frames_sent"] - sent >= 5  # one write per frame while slow


async def test_huge_frame_exceeds_default_limit(sim: Simulator) -> None:
    from websockets.asyncio.client import connect

    async with connect(sim.url("spot_oss"), compression=None, max_size=2**20) as ws:
        await _book_stream(sim, ws)
        sim.inject("huge", product="spot")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.sent is not None and info.value.sent.code == 1009
    async with client(sim.url("spot_oss")) as ws:  # no limit: the frame arrives whole
        await _book_stream(sim, ws)
        sim.inject("huge", product="spot", size=3_000_000)
        assert len(await ws.recv()) >= 3_000_000


async def test_rename_uses_the_legacy_alias(sim: Simulator) -> None:
    async with client(sim.url("futures_oss")) as ws:
        await _book_stream(sim, ws, "BTC-PERP")
        sim.inject("rename", product="futures", symbol="BTC-PERP")
        sim.tick(3, product="futures")
        msg = await recv_json(ws)
        assert msg["topic"] == "update:BTCPFC_0" and msg["data"]["symbol"] == "BTCPFC"
        sim.inject("rename", product="futures", symbol="BTC-PERP", off=True)
        sim.tick(30, product="futures")
        last = sim.truth.last_seq("futures", "BTC-PERP")
        final = await recv_until(ws, lambda m: m["data"]["seqNum"] == last)
        assert final["data"]["symbol"] == "BTC-PERP"
    async with client(sim.url("futures_oss")) as ws:  # the legacy name is also subscribable
        ack = await subscribe(ws, "update:BTCPFC_0")
        assert ack["channel"] == ["update:BTCPFC_0"]
        assert (await recv_json(ws))["data"]["symbol"] == "BTCPFC"


def test_fault_spec_parsing() -> None:
    fault = parse_fault("stall@10:seconds=3,product=spot")
    assert (fault.kind, fault.at, fault.product, fault.params) == ("stall", 10.0, "spot", {"seconds": 3})
    for bad, text in [("nope@1", "unknown kind"), ("gap", "KIND@SECONDS"), ("gap@x", "not a number"),
                      ("gap@1:colour=red", "unknown parameter"), ("slow@1:delay=-1", "non-negative")]:
        with pytest.raises(FaultSpecError, match=text):
            parse_fault(bad)


async def test_scheduled_fault_fires(mono: FakeClock) -> None:
    async with Simulator(seed=1, symbols={"spot": ["BTC-USD"]}, rate=0, faults=[("gap", 0.0)],
                         monotonic=mono) as sim:
        await sim.wait_for(lambda: sim.counters.get("fault_gap", 0) == 1)
        assert sim.exchange.gap_pending[("spot", "BTC-USD", 0)] == 1
