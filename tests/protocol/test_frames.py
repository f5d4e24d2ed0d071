from __future__ import annotations

import json

import pytest

from collector.protocol import frames
from collector.protocol.auth import sign

SECRET = "848db84ac252b6726e5f6e7a711d9c96d9fd77d020151b45839a5b59c37203bx"
API_KEY = "4e9536c79f0fdd72bf04f2430982d3f61d9d76c996f0175bbba470d69d59816x"
NONCE = "1624985375123"

# reference §2.4: every worked vector, recomputed with openssl there
VECTORS = {
    "/ws/spot": "c410d38c681579adb335885800cff24c66171b7cc8376cfe43da1408c581748156b89bcc5a115bb496413bda481139fb",
    "/ws/futures": "bd8afb8bee58ba0a2c67f84dcfe6e64d0274f55d064bb26ea84a0fe6dd8c621b541b511982fb0c0b8c244e9521a80ea1",
    "/ws/otc": "971798b32585d7e63a1c2cafd261170c56caf17ff1d32a58fc2e9842292fa8ff2dbcf4fda7b4d6aed4a737c3c2930cf1",
    "/ws/oss/spot": "9438a133d80d23be8337aaff149e4ba1e1693196133bb5ae762475855fd8eb7c8612fbe03f91fccd1bd14768e3c443d0",
    "/ws/oss/futures": "4f846304d848866d182ae6420b71eb54426bf58006a758836b170f6af022c03ac903b5f6190368b3e98c09bedbbdf737",
}


@pytest.mark.parametrize(("path", "signature"), sorted(VECTORS.items()))
def test_signer_matches_every_documented_vector(path: str, signature: str) -> None:
    assert sign(SECRET, path, NONCE) == signature
    assert sign(SECRET, path, int(NONCE)) == signature


def test_signer_rejects_a_path_without_slash() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        sign(SECRET, "ws/spot", NONCE)


def test_auth_frame_is_the_documented_request() -> None:
    frame = json.loads(frames.auth_key_expires(API_KEY, SECRET, "/ws/spot", 1624985375123))
    assert frame == {"op": "authKeyExpires", "args": [API_KEY, NONCE, VECTORS["/ws/spot"]]}
    with pytest.raises(ValueError, match="milliseconds"):
        frames.auth_key_expires(API_KEY, SECRET, "/ws/spot", "12a")
    with pytest.raises(ValueError, match="non-empty"):
        frames.auth_key_expires("", SECRET, "/ws/spot", 1)


def test_subscribe_and_unsubscribe_carry_several_topics() -> None:
    topics = ["update:BTC-USD_0", "snapshotL1:BTC-USD", "update:ETH-USD_0"]
    assert json.loads(frames.subscribe(topics)) == {"op": "subscribe", "args": topics}
    assert json.loads(frames.unsubscribe(topics[:1])) == {"op": "unsubscribe", "args": topics[:1]}
    with pytest.raises(ValueError, match="at least one topic"):
        frames.subscribe([])
    with pytest.raises(ValueError, match="invalid topic"):
        frames.subscribe([" update:BTC-USD_0"])


def test_ping_is_bare_text() -> None:
    assert frames.PING == "ping"


def test_otc_frames() -> None:
    quote = json.loads(frames.otc_quote("BTC-USD", 1, "BTC", side="buy", cl_order_id="ClientOrder1"))
    assert quote == {
        "op": "quote",
        "symbol": "BTC-USD",
        "side": "buy",
        "clOrderId": "ClientOrder1",
        "quantity": {"quantity": 1, "currency": "BTC"},
    }
    both = json.loads(frames.otc_quote("BTC-USD", "0.15", "BTC"))
    assert "side" not in both
    assert both["quantity"] == {"quantity": 0.15, "currency": "BTC"}
    unsub = json.loads(frames.otc_unsubscribe_quote("BTC-USD", 1, "BTC", cl_order_id="ClientOrder1"))
    assert unsub == {
        "op": "unsubscribe-quote",
        "symbol": "BTC-USD",
        "clOrderId": "ClientOrder1",
        "quantity": {"quantity": 1, "currency": "BTC"},
    }
    assert json.loads(frames.otc_unsubscribe_quote_all()) == {"op": "unsubscribe-quote-all"}


def test_otc_quote_errors_are_named() -> None:
    with pytest.raises(ValueError, match="lower case"):
        frames.otc_quote("BTC-USD", 1, "BTC", side="BUY")
    with pytest.raises(ValueError, match="positive"):
        frames.otc_quote("BTC-USD", 0, "BTC")
    with pytest.raises(ValueError, match="currency"):
        frames.otc_quote("BTC-USD", 1, "")
