"""Every frame the simulator sends in normal mode validates against its payload schema in specs/."""

from __future__ import annotations

import json

from sim_helpers import client, recv_json, send, subscribe

from collector.simulator import Simulator, sign


async def test_thousands_of_frames_validate(sim: Simulator) -> None:
    reg = sim.registry
    plan = {
        "spot_oss": ["update:BTC-USD_0", "update:ETH-USD_2", "update:BTC-USD", "snapshotL1:ETH-USD"],
        "spot": ["tradeHistoryApi:BTC-USD", "tradeHistoryApi:ETH-USD"],
        "futures_oss": ["update:BTC-PERP_0", "snapshotL1:BTC-PERP", "update:BTC-PERP_1"],
        "futures": ["tradeHistoryApiV3:BTC-PERP"],
    }
    checked: dict[str, int] = {}
    for server, topics in plan.items():
        product = reg.server(server).product
        async with client(sim.url(server)) as ws:
            ack = await subscribe(ws, *topics)
            assert sorted(ack["channel"]) == sorted(topics)
            sim.tick(400)
            await send(ws, "ping")
            while (text := await ws.recv()) != "pong":
                frame = json.loads(text)
                matched = reg.match(product, frame["topic"])
                assert matched is not None, frame["topic"]
                reg.validate(matched[0], frame)
                checked[matched[0].kind] = checked.get(matched[0].kind, 0) + 1
    assert sum(checked.values()) >= 2000
    assert {"book", "l1", "trades"} <= set(checked)


async def test_otc_quotes_and_silent_subscribe_ack() -> None:
    async with Simulator(seed=5, symbols={"otc": ["BTC-USD"]}, rate=0, api_keys={"k": "s"}) as sim:
        quote = sim.registry.channel("otc", "otc_quote")
        async with client(sim.url("otc")) as ws:
            assert await subscribe(ws, "quote") == {"event": "subscribe", "channel": []}
            await send(ws, {"op": "quote", "symbol": "BTC-USD", "side": "buy", "clOrderId": "c1",
                            "quantity": {"quantity": 1, "currency": "BTC"}})
            first = await recv_json(ws)
            sim.registry.validate(quote, first)
            assert first["topic"] == "quote" and first["buyQuoteId"] is None  # not authenticated
            assert first["sellUnitPrice"] is None and first["buyUnitPrice"] > 0
            await send(ws, {"op": "authKeyExpires", "args": ["k", "9", sign("s", "/ws/otc", "9")]})
            assert await recv_json(ws) == {"event": "login", "success": True}
            await send(ws, {"op": "quote", "symbol": "BTC-USD", "quantity": {"quantity": 60000, "currency": "USD"}})
            both = await recv_json(ws)
            sim.registry.validate(quote, both)
            assert both["buyQuoteId"] and both["sellQuoteId"] and both["buyUnitPrice"] > both["sellUnitPrice"]
            sim.tick(3)
            streamed = [await recv_json(ws) for _ in range(6)]
            for msg in streamed:
                sim.registry.validate(quote, msg)
            assert {m["clOrderId"] for m in streamed} == {"c1", None}
            await send(ws, {"op": "unsubscribe-quote-all"})
            await send(ws, {"op": "quote", "symbol": "BTC-USD", "side": "BUY", "quantity": {"quantity": 1, "currency": "BTC"}})
            rejected = await recv_json(ws)
            assert "side" in rejected["reason"]
            sim.tick(3)
            await send(ws, "ping")
            assert await ws.recv() == "pong"  # nothing streamed after unsubscribe-quote-all
