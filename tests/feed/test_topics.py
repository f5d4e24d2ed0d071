import json
from pathlib import Path

import pytest

from collector.config import Credentials, load_config
from collector.feed.topics import (
    KeyAuth,
    QuoteFrames,
    SubscribeFrames,
    otc_key,
    server_urls,
    subscriptions,
)
from collector.protocol.auth import sign
from collector.specs import load_registry

CONFIG = """
data_dir: {data}
endpoints:
  spot_oss: ws://127.0.0.1:9/ws/oss/spot
markets:
  - product: spot
    symbols: [BTC-USD]
    channels: [book, trades, l1]
    groupings: [0, 2]
  - product: futures
    symbols: [BTC-PERP]
    channels: [book]
otc:
  quotes:
    - {{symbol: BTC-USD, quantity: 1, currency: BTC}}
    - {{symbol: BTC-USD, quantity: 2.5, currency: USD, side: sell, cl_order_id: x1}}
"""


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return load_registry()


def test_topics_are_rendered_from_the_specs_per_server(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(data=tmp_path / "d"))
    config = load_config(path)
    subs = subscriptions(config, registry)
    by_server = subs.by_server()
    assert by_server["spot_oss"] == ["update:BTC-USD_0", "update:BTC-USD_2", "snapshotL1:BTC-USD"]
    assert by_server["spot"] == ["tradeHistoryApi:BTC-USD"]
    assert by_server["futures_oss"] == ["update:BTC-PERP_0"]
    keys = by_server["otc"]
    assert keys == ["quote:BTC-USD:1:BTC:both:", "quote:BTC-USD:2.5:USD:sell:x1"]
    assert subs.otc_requests[keys[1]].cl_order_id == "x1"
    assert otc_key(subs.otc_requests[keys[0]]) == keys[0]
    urls = server_urls(config, registry)
    assert urls["spot_oss"] == "ws://127.0.0.1:9/ws/oss/spot"  # the override
    assert urls["spot"] == registry.server("spot").url

    frames = QuoteFrames(subs.otc_requests)
    sent = [json.loads(f) for f in frames.subscribe(keys)]
    assert sent[0] == {
        "op": "quote",
        "symbol": "BTC-USD",
        "quantity": {"quantity": 1, "currency": "BTC"},
    }
    assert sent[1]["side"] == "sell" and sent[1]["clOrderId"] == "x1"
    assert json.loads(frames.unsubscribe(keys[:1])[0])["op"] == "unsubscribe-quote"
    assert [json.loads(f) for f in SubscribeFrames().subscribe(["a:b"])] == [
        {"op": "subscribe", "args": ["a:b"]}
    ]
    assert SubscribeFrames().unsubscribe([]) == []


def test_key_auth_signs_the_otc_path_and_never_shows_the_secret() -> None:
    auth = KeyAuth(Credentials("key-1", "secret-1"), "/ws/otc")
    frame = json.loads(auth.auth_frame())
    assert frame["op"] == "authKeyExpires"
    key, nonce, signature = frame["args"]
    assert key == "key-1" and nonce.isdigit()
    assert signature == sign("secret-1", "/ws/otc", nonce)
    assert "secret-1" not in repr(auth)
    assert auth.login_result('{"event":"login","success":true}') is True
