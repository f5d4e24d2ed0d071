"""Decoding: golden tests on the real captured BTSE frames, and every failure kind."""

from __future__ import annotations

import pytest

from collector.protocol.decode import Decoder
from collector.protocol.records import (
    Ack,
    BookUpdate,
    DecodeFailure,
    ExchangeErrorFrame,
    L1Update,
    LoginAck,
    OtcQuote,
    PongFrame,
    PrivateMessage,
    Trades,
)
from collector.protocol.symbols import canonical_symbol

PRODUCT = {"spot": "spot", "spot_oss": "spot", "futures": "futures", "futures_oss": "futures", "otc": "otc"}


@pytest.fixture
def decode(make_registry):  # type: ignore[no-untyped-def]
    reg = make_registry()
    decoders: dict[str, Decoder] = {}

    def run(server: str, text: str | bytes, ts: int = 7):  # type: ignore[no-untyped-def]
        product = PRODUCT[server]
        dec = decoders.setdefault(product, Decoder(reg, product, validate_every=1))
        return dec.decode(text, ts)

    return run


def test_golden_futures_snapshot(decode, frames) -> None:  # type: ignore[no-untyped-def]
    rec = decode("futures_oss", frames["futures_book_snapshot_sndk"]["frame"], 42)
    assert rec == BookUpdate(
        product="futures",
        topic="update:SNDK-PERP_0",
        symbol="SNDK-PERP",
        wire_symbol="SNDK-PERP",
        grouping=0,
        is_snapshot=True,
        bids=((1876.9, 44.0), (1876.89, 122.0), (1876.87, 35.0)),
        asks=((1880.19, 900.0), (1880.0, 450.0), (1879.7, 450.0)),
        seq=8896865,
        prev_seq=8896864,
        timestamp_us=1790134937297000,
        local_ts=42,
    )


def test_golden_delta_bytes_and_str_agree(decode, frames) -> None:  # type: ignore[no-untyped-def]
    text = frames["futures_book_delta_btc"]["frame"]
    a = decode("futures_oss", text)
    b = decode("futures_oss", text.encode())
    assert a == b
    assert isinstance(a, BookUpdate) and not a.is_snapshot
    assert a.bids == ((86540.6, 60672.0), (86540.5, 4400.0)) and a.asks == ()
    assert (a.seq, a.prev_seq) == (86511210, 86511209)


def test_golden_spot_book_strings_keep_exact_values(decode, frames) -> None:  # type: ignore[no-untyped-def]
    snap = decode("spot_oss", frames["spot_book_snapshot_doc"]["frame"])
    assert isinstance(snap, BookUpdate)
    assert snap.bids[0] == (59252.5, 0.06865) and repr(snap.bids[0][1]) == "0.06865"
    assert snap.asks[-1] == (59278.5, 0.01472)
    delta = decode("spot_oss", frames["spot_book_delta_doc"]["frame"])
    assert isinstance(delta, BookUpdate)
    assert delta.topic == "update:BTC-USD" and delta.grouping == 0  # pre-2023 topic form
    assert delta.asks == ((59367.5, 2.15622), (59325.5, 0.0))


def test_golden_l1_and_legacy_alias(decode, frames) -> None:  # type: ignore[no-untyped-def]
    l1 = decode("futures_oss", frames["futures_l1_ethpfc_legacy"]["frame"])
    assert l1 == L1Update("futures", "snapshotL1:ETHPFC", "ETH-PERP", "ETHPFC", (4386.37, 8403.0), (4386.58, 8860.0), 1759373840687000, 7)
    spot = decode("spot_oss", frames["spot_l1_doc"]["frame"])
    assert isinstance(spot, L1Update) and spot.bid == (28016.7, 1.48063) and spot.symbol == "BTC-USD"


def test_golden_trades_numbers_and_bare_topic(decode, frames) -> None:  # type: ignore[no-untyped-def]
    v3 = decode("futures", frames["futures_trades_v3"]["frame"])
    assert isinstance(v3, Trades)
    (t,) = v3.trades
    assert (t.symbol, t.side, t.price, t.amount, t.trade_id, t.trade_seq, t.timestamp_us) == (
        "BTC-PERP", "sell", 86641.9, 70.0, "57971633", 57971633, 1790134428345000
    )
    legacy = decode("futures", frames["futures_trades_legacy_bare_topic"]["frame"])
    assert isinstance(legacy, Trades) and legacy.topic == "tradeHistoryApi"
    assert legacy.trades[0].symbol == "BTC-PERP" and legacy.trades[0].wire_symbol == "BTCPFC"
    assert legacy.trades[0].side == "buy"
    spot = decode("spot", frames["spot_trades_doc"]["frame"])
    assert isinstance(spot, Trades) and spot.trades[0].amount == 0.007 and spot.trades[0].price == 5302.8


def test_golden_control_frames(decode, frames) -> None:  # type: ignore[no-untyped-def]
    assert decode("spot_oss", "pong", 5) == PongFrame(5)
    assert decode("spot", frames["subscribe_ack"]["frame"]) == Ack("subscribe", ["tradeHistoryApi:BTC-USD"], 7)
    assert decode("spot", frames["subscribe_ack_empty"]["frame"]) == Ack("subscribe", [], 7)
    assert decode("futures_oss", frames["unsubscribe_ack"]["frame"]).topics == ["update:ETH-PERP-USDT_0"]
    assert decode("futures", frames["login_ack"]["frame"]) == LoginAck(True, None, None, 7)
    assert decode("futures", '{"event":"login","success":false,"code":-7,"msg":"Authenticate failed"}') == LoginAck(
        False, -7, "Authenticate failed", 7
    )


def test_golden_error_frames_both_formats(decode, frames) -> None:  # type: ignore[no-untyped-def]
    new = decode("futures_oss", frames["oss_error_two_args"]["frame"])
    assert isinstance(new, ExchangeErrorFrame)
    assert [(e.topic, e.code, e.message) for e in new.entries] == [
        ("foo:BTC-PERP", 1005, "Topic provided does not exist."),
        ("update:NOPE-PERP_0", 1000, "Market pair provided is currently not supported."),
    ]
    no_arg = decode("futures_oss", frames["oss_error_no_arg"]["frame"])
    assert [(e.topic, e.code) for e in no_arg.entries] == [(None, 1001)]
    old = decode("spot_oss", frames["oss_error_old_format"]["frame"])
    assert [(e.topic, e.code, e.message) for e in old.entries] == [("update:BTCC-USD_0", None, "MARKET_PAIR_NOT_SUPPORT")]


def test_golden_otc_quote(decode, frames) -> None:  # type: ignore[no-untyped-def]
    q = decode("otc", frames["otc_quote_doc"]["frame"])
    assert isinstance(q, OtcQuote)
    assert q.buy_unit_price == 47865.580838 and q.sell_unit_price == 47649.40351972
    assert q.buy_quote_id == "015f05ba-1d55-46d7-94d9-214229414ae7" and q.cl_order_id is None


def test_every_captured_frame_decodes_without_failure(decode, frames) -> None:  # type: ignore[no-untyped-def]
    for name, f in frames.items():
        rec = decode(f["server"], f["frame"])
        assert not isinstance(rec, DecodeFailure), (name, rec)


def test_private_channel_is_recognised(decode) -> None:  # type: ignore[no-untyped-def]
    rec = decode("futures", '{"topic":"notificationApiV4","data":[]}')
    assert isinstance(rec, (PrivateMessage, DecodeFailure))
    if isinstance(rec, DecodeFailure):  # specs without the private channel: still never silent
        assert "matches no futures channel" in rec.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello", "not JSON"),
        ("[1,2]", "not a JSON object"),
        ('{"foo":1}', "unrecognized frame"),
        ('{"topic":"nope:BTC-USD","data":{}}', "matches no spot channel"),
        ('{"topic":"update:BTC-USD_0","data":{"bids":[["1","2","3"]],"asks":[],"seqNum":1,"prevSeqNum":0,"type":"delta","symbol":"BTC-USD","timestamp":1}}', "book frame"),
        ('{"topic":"update:BTC-USD_0","data":{"bids":[],"asks":[],"seqNum":1,"prevSeqNum":0,"type":"weird","symbol":"BTC-USD","timestamp":1}}', "book frame"),
        ('{"topic":"update:BTC-USD_0","data":{"bids":[["nan","1"]],"asks":[],"seqNum":1,"prevSeqNum":0,"type":"delta","symbol":"BTC-USD","timestamp":1}}', "book frame"),
        ('{"topic":"update:BTC-USD_0","data":{"bids":[["-1","1"]],"asks":[],"seqNum":1,"prevSeqNum":0,"type":"delta","symbol":"BTC-USD","timestamp":1}}', "book frame"),
        ('{"topic":"update:BTC-USD_0","data":{"bids":[["59252.50000000000001","1"]],"asks":[],"seqNum":1,"prevSeqNum":0,"type":"delta","symbol":"BTC-USD","timestamp":1}}', "significant digits"),
        ('{"topic":"tradeHistoryApi:BTC-USD","data":[{"symbol":"BTC-USD","side":"SELL","size":0.007,"price":5302.80000000000001,"tradeId":1,"timestamp":1}]}', "significant digits"),
        ('{"topic":"tradeHistoryApi:BTC-USD","data":[{"symbol":"BTC-USD","side":"SIDEWAYS","size":1,"price":1,"tradeId":1,"timestamp":1}]}', "trade side"),
        ('{"severity":"ERROR"}', "without 'errors'"),
        ('{"event":"login"}', "boolean 'success'"),
        ('{"event":"subscribe","channel":"x"}', "not a list"),
    ],
)
def test_failures_are_typed_records_with_raw_text(decode, text: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    rec = decode("spot_oss" if "update" in text else "spot", text)
    assert isinstance(rec, DecodeFailure), rec
    assert reason in rec.reason
    assert rec.raw == text


def test_long_but_exact_value_passes_the_precise_check(decode) -> None:  # type: ignore[no-untyped-def]
    text = '{"topic":"update:BTC-USD_0","data":{"bids":[["0.000000000012345","100000000000000"]],"asks":[],"seqNum":1,"prevSeqNum":0,"type":"delta","symbol":"BTC-USD","timestamp":1}}'
    rec = decode("spot_oss", text)
    assert isinstance(rec, BookUpdate) and rec.bids == ((1.2345e-11, 1e14),)


def test_failures_are_counted(registry) -> None:  # type: ignore[no-untyped-def]
    dec = Decoder(registry, "spot", validate_every=0)
    for _ in range(3):
        dec.decode("garbage", 1)
    dec.decode("pong", 1)
    assert (dec.frames, dec.failures) == (4, 3)


def test_sampled_validation_counts_and_keeps_drifting_frames(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    reg = make_registry(drift_kinds=("book",))
    dec = Decoder(reg, "futures", validate_every=2)
    text = frames["futures_book_delta_btc"]["frame"]
    records = [dec.decode(text, i) for i in range(5)]
    assert all(isinstance(r, BookUpdate) for r in records)  # kept and used
    assert dec.validated == 2 and dec.drift_count == 2
    drifts = dec.take_drifts()
    assert [(d.kind, d.path, d.local_ts) for d in drifts] == [("book", "$.data.extra", 1), ("book", "$.data.extra", 3)]
    assert dec.drifts == []
    assert reg.validated[0][1]["data"]["symbol"] == "BTC-PERP"  # the full frame was validated


def test_real_spec_accepts_the_captured_frames(registry, frames) -> None:  # type: ignore[no-untyped-def]
    for server in ("futures_oss", "spot_oss", "futures", "spot", "otc"):
        dec = Decoder(registry, PRODUCT[server], validate_every=1)
        for _name, f in frames.items():
            if f["server"] == server:
                dec.decode(f["frame"], 1)
        assert dec.drift_count == 0, [(d.topic, d.path, d.message) for d in dec.drifts]


def test_validation_rate_is_checked(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="validate_every"):
        Decoder(registry, "spot", validate_every=-1)


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [("BTCPFC", "BTC-PERP"), ("ETHPFC", "ETH-PERP"), ("BTC-PERP-USDT", "BTC-PERP"), ("1KPEPE-PERP-USDT", "1KPEPE-PERP"), ("BTC-USD", "BTC-USD"), ("BTC-USDT", "BTC-USDT")],
)
def test_symbol_aliases(wire: str, canonical: str) -> None:
    assert canonical_symbol(wire) == canonical
