"""Protocol rules of the simulated exchange, checked with a raw websockets client."""

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

from collector.simulator import Simulator, sign
from collector.simulator.session import Auth, verify_auth

SECRET = "848db84ac252b6726e5f6e7a711d9c96d9fd77d020151b45839a5b59c37203bx"
KEY = "4e9536c79f0fdd72bf04f2430982d3f61d9d76c996f0175bbba470d69d59816x"
NONCE = "1624985375123"
VECTORS = {
    "/ws/spot": "c410d38c681579adb335885800cff24c66171b7cc8376cfe43da1408c581748156b89bcc5a115bb496413bda481139fb",
    "/ws/futures": "bd8afb8bee58ba0a2c67f84dcfe6e64d0274f55d064bb26ea84a0fe6dd8c621b541b511982fb0c0b8c244e9521a80ea1",
    "/ws/otc": "971798b32585d7e63a1c2cafd261170c56caf17ff1d32a58fc2e9842292fa8ff2dbcf4fda7b4d6aed4a737c3c2930cf1",
}


@pytest.mark.parametrize("path,signature", sorted(VECTORS.items()))
def test_documented_auth_vectors_verify(path: str, signature: str) -> None:
    assert sign(SECRET, path, NONCE) == signature
    assert verify_auth({KEY: SECRET}, path, Auth("authKeyExpires", KEY, NONCE, signature))
    assert not verify_auth({KEY: SECRET}, "/ws/spot" if path != "/ws/spot" else "/ws/futures",
                           Auth("authKeyExpires", KEY, NONCE, signature))


async def test_ping_pong_and_oss_error_frames(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await send(ws, "ping")
        assert await ws.recv() == "pong"
        ack = await subscribe(ws, "update:BTC-USD_0", "update:NOPE-USD_0", "foo:BTC-USD",
                              "tradeHistoryApi:BTC-USD")
        assert ack == {"event": "subscribe", "channel": ["update:BTC-USD_0"]}
        err = await recv_json(ws)
        assert err == {"severity": "ERROR", "errors": [
            {"arg": "update:NOPE-USD_0", "error": {"code": 1000, "message": "Market pair provided is currently not supported."}},
            {"arg": "foo:BTC-USD", "error": {"code": 1005, "message": "Topic provided does not exist."}},
            {"arg": "tradeHistoryApi:BTC-USD", "error": {"code": 1005, "message": "Topic provided does not exist."}},
        ]}
        assert (await recv_json(ws))["data"]["type"] == "snapshot"
        await send(ws, {"op": "nope", "args": []})
        assert await recv_json(ws) == {"severity": "ERROR", "errors": [
            {"error": {"code": 1001, "message": "Operation provided is currently not supported"}}]}
        await send(ws, "hello")
        assert (await recv_json(ws))["errors"][0]["error"]["code"] == 1002
        await send(ws, {"op": "subscribe"})  # no args: no reply at all
        await send(ws, "ping")
        assert await ws.recv() == "pong"


async def test_main_endpoint_leaves_unserved_topics_out_of_the_ack(sim: Simulator) -> None:
    async with client(sim.url("futures")) as ws:
        ack = await subscribe(ws, "update:BTC-PERP_0", "snapshotL1:BTC-PERP", "tradeHistoryApiV3:BTC-PERP",
                              "tradeHistoryApiV3:NOPE-PERP")
        assert ack == {"event": "subscribe", "channel": ["tradeHistoryApiV3:BTC-PERP"]}
        batch = await recv_json(ws)
        assert batch["topic"] == "tradeHistoryApiV3:BTC-PERP"
        await send(ws, {"op": "nope"})
        await send(ws, "ping")
        assert await ws.recv() == "pong"  # no error frames on main endpoints


async def test_snapshot_order_and_deltas_follow_the_truth(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await subscribe(ws, "update:BTC-USD_0")
        snap = (await recv_json(ws))["data"]
        assert list(snap) == ["bids", "asks", "seqNum", "prevSeqNum", "type", "symbol", "timestamp"]
        assert snap["prevSeqNum"] == snap["seqNum"] - 1 and snap["symbol"] == "BTC-USD"
        bids = [float(p) for p, _ in snap["bids"]]
        asks = [float(p) for p, _ in snap["asks"]]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks, reverse=True)  # best ask last
        assert 20 <= len(bids) <= 50 and 20 <= len(asks) <= 50
        assert all(p.endswith(("0", "5")) and "." in p for p, _ in snap["bids"])
        assert all(len(s.split(".")[1]) == 5 for _, s in snap["asks"])
        book = as_book(snap)
        assert book == truth_dict(sim.truth.book("spot", "BTC-USD", seq=snap["seqNum"]))
        sim.tick(300, product="spot", symbol="BTC-USD")
        last = snap["seqNum"]
        while last < sim.truth.last_seq("spot", "BTC-USD"):
            msg = await recv_json(ws)
            if msg["data"]["type"] != "delta":
                continue
            data = msg["data"]
            assert data["prevSeqNum"] == last and data["seqNum"] == last + 1
            last = data["seqNum"]
            apply(book, data)
            assert book == truth_dict(sim.truth.book("spot", "BTC-USD", seq=last))
            assert max(map(float, book["bids"])) < min(map(float, book["asks"]))
            assert len(book["bids"]) <= 50 and len(book["asks"]) <= 50


async def test_resubscribe_sends_a_fresh_snapshot_and_the_chain_continues(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await subscribe(ws, "update:ETH-USD_0")
        first = (await recv_json(ws))["data"]
        sim.tick(20, product="spot", symbol="ETH-USD")
        seq = sim.truth.last_seq("spot", "ETH-USD")
        await recv_until(ws, lambda m: m["data"]["seqNum"] == seq)
        assert await subscribe(ws, "update:ETH-USD_0") == {"event": "subscribe", "channel": ["update:ETH-USD_0"]}
        snap = (await recv_json(ws))["data"]
        assert snap["type"] == "snapshot" and snap["seqNum"] == seq > first["seqNum"]
        assert as_book(snap) == truth_dict(sim.truth.book("spot", "ETH-USD"))
        sim.tick(5, product="spot", symbol="ETH-USD")
        nxt = (await recv_json(ws))["data"]
        assert nxt["type"] == "delta" and nxt["prevSeqNum"] == seq


async def test_unsubscribe_stops_frames(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await subscribe(ws, "update:BTC-USD_0")
        await recv_json(ws)
        await send(ws, {"op": "unsubscribe", "args": ["update:BTC-USD_0"]})
        assert await recv_json(ws) == {"event": "unsubscribe", "channel": ["update:BTC-USD_0"]}
        sim.tick(20, product="spot")
        await send(ws, "ping")
        assert await ws.recv() == "pong"


async def test_ungrouped_topic_shares_seqnums_and_groupings_are_own_chains(sim: Simulator) -> None:
    async with client(sim.url("futures_oss")) as ws:
        ack = await subscribe(ws, "update:BTC-PERP_0", "update:BTC-PERP", "update:BTC-PERP_3", "update:BTC-PERP_9")
        assert ack["channel"] == ["update:BTC-PERP_0", "update:BTC-PERP", "update:BTC-PERP_3", "update:BTC-PERP_9"]
        snaps = {}
        for _ in range(3):
            msg = await recv_json(ws)
            snaps[msg["topic"]] = msg["data"]
        assert set(snaps) == {"update:BTC-PERP_0", "update:BTC-PERP", "update:BTC-PERP_3"}
        assert snaps["update:BTC-PERP"]["seqNum"] == snaps["update:BTC-PERP_0"]["seqNum"]
        assert snaps["update:BTC-PERP_3"]["seqNum"] != snaps["update:BTC-PERP_0"]["seqNum"]
        # snapshots are sent ungrouped (documented); sizes are integer contracts
        assert snaps["update:BTC-PERP_3"]["bids"] == snaps["update:BTC-PERP_0"]["bids"]
        assert all(s.isdigit() for _, s in snaps["update:BTC-PERP_0"]["bids"])
        sim.tick(200, product="futures")
        seen: dict[str, list[int]] = {}
        target = sim.truth.last_seq("futures", "BTC-PERP", 0)
        while seen.get("update:BTC-PERP_0", [0])[-1] != target:
            msg = await recv_json(ws)
            seen.setdefault(msg["topic"], []).append(msg["data"]["seqNum"])
        assert "update:BTC-PERP_9" not in seen  # acked, silent
        n = len(seen["update:BTC-PERP_0"])
        plain = seen["update:BTC-PERP"]
        assert len(plain) >= n - 1 and plain == seen["update:BTC-PERP_0"][: len(plain)]
        grouped = seen.get("update:BTC-PERP_3", [])
        assert grouped == list(range(grouped[0], grouped[0] + len(grouped)))
        assert 0 < len(grouped) <= n


async def test_trades_recent_batch_newest_first_then_live(sim: Simulator) -> None:
    async with client(sim.url("futures")) as ws:
        await subscribe(ws, "tradeHistoryApiV3:BTC-PERP")
        batch = await recv_json(ws)
        ids = [t["tradeId"] for t in batch["data"]]
        assert ids == sorted(ids, reverse=True) and len(ids) == 20
        entry = batch["data"][0]
        assert list(entry) == ["price", "size", "side", "symbol", "tradeId", "timestamp"]
        assert isinstance(entry["price"], float) and isinstance(entry["size"], int)
        sim.tick(200, product="futures")
        live = [t for t in sim.truth.trades("futures", "BTC-PERP") if t.sent_at is not None]
        got = []
        while len(got) < len(live):
            got.extend((await recv_json(ws))["data"])
        assert [t["tradeId"] for t in got] == [t.trade_id for t in live]
        assert [(str(t["price"]), str(t["size"])) for t in got] == [(str(float(t.price)), t.size) for t in live]
    async with client(sim.url("spot")) as ws:
        await subscribe(ws, "tradeHistoryApi:BTC-USD")
        entry = (await recv_json(ws))["data"][0]
        assert isinstance(entry["size"], float) and entry["symbol"] == "BTC-USD"


async def test_l1_follows_the_top_of_book(sim: Simulator) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await subscribe(ws, "snapshotL1:BTC-USD")
        first = (await recv_json(ws))["data"]
        assert first["type"] == "snapshotL1" and "seqNum" not in first
        sim.tick(50, product="spot", symbol="BTC-USD")
        book = sim.truth.book("spot", "BTC-USD")
        msg = await recv_until(ws, lambda m: m["data"]["bids"] == [list(book.bids[0])]
                               and m["data"]["asks"] == [list(book.asks[0])])
        assert msg["topic"] == "snapshotL1:BTC-USD"


async def test_login_success_and_failure(sim: Simulator) -> None:
    async with client(sim.url("spot")) as ws:
        await send(ws, {"op": "authKeyExpires", "args": ["k1", "1", "bad"]})
        assert await recv_json(ws) == {"event": "login", "success": False}
        await send(ws, {"op": "authKeyExpires", "args": ["k1", "1", sign("s1", "/ws/spot", "1")]})
        assert await recv_json(ws) == {"event": "login", "success": True}
    async with client(sim.url("futures")) as ws:
        await send(ws, {"op": "login", "args": ["k1", "7", sign("s1", "/ws/futures", "7")]})
        assert await recv_json(ws) == {"event": "login", "success": True}


async def test_idle_connection_dropped_without_close_frame(sim: Simulator, mono: FakeClock) -> None:
    async with client(sim.url("spot_oss")) as ws:
        await send(ws, "ping")
        assert await ws.recv() == "pong"
        mono.advance(59.0)
        assert sim.check_idle() == 0
        mono.advance(1.5)
        assert sim.check_idle() == 1
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is None  # abrupt: no close frame


async def test_same_seed_same_frames() -> None:
    async def run() -> list[str]:
        async with (Simulator(seed=42, symbols={"spot": ["BTC-USD"]}, rate=0, clock=lambda: 1.0) as s,
                    client(s.url("spot_oss")) as ws):
            await subscribe(ws, "update:BTC-USD_0")
            s.tick(100)
            out = [await ws.recv() for _ in range(60)]
            return [o for o in out if isinstance(o, str)]
    assert await run() == await run()


async def test_unknown_path_is_404(sim: Simulator) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        async with client(sim.url("spot").replace("/ws/spot", "/ws/nope")):
            pass
    assert info.value.response.status_code == 404
    assert json.dumps(sim.urls)
