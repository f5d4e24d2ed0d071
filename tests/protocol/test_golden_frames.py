"""Golden tests: every frame of the reference (tests/fixtures/frames) through the Normalizer.

Each captured frame (wire captures verbatim, documentation examples compacted) is fed to a
fresh :class:`Normalizer` and the rows, events and commands it produces are asserted value by
value, so a change in how we read BTSE's real frames shows up here. A test at the end checks
that every frame of the fixture file is covered by one of them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from collector.protocol import Acknowledged, ExchangeErrorSeen, Normalizer
from collector.protocol.decode import Decoder
from collector.protocol.records import ExchangeErrorFrame, OtcQuote, PrivateMessage
from collector.protocol.rows import TABLES, as_lists

T0 = 1_790_000_000_000_000
COVERED: set[str] = set()


def run(make_registry: Any, frames: dict[str, dict[str, str]], *names: str) -> tuple[Normalizer, list[Any]]:
    """A fresh normalizer fed the named captured frames in order (one connection per server)."""
    norm = Normalizer(make_registry(), snapshot_interval_s=10, validate_sample_rate=1.0)
    cmds: list[Any] = []
    for i, name in enumerate(names):
        COVERED.add(name)
        f = frames[name]
        cmds += norm.feed(f"{f['server']}#0", f["server"], f["frame"], T0 + i)
    return norm, cmds


def rows(norm: Normalizer, table: str, *cols: str) -> list[tuple[Any, ...]]:
    taken = as_lists(norm.buffers.take(table))  # book_changes are handed over as Arrow
    if not taken:
        return []
    return list(zip(*(taken[c] for c in cols), strict=True))


def pending(norm: Normalizer) -> dict[str, int]:
    return {t: norm.buffers.pending(t) for t in TABLES if t != "raw" and norm.buffers.pending(t)}


def no_problems(norm: Normalizer) -> None:
    s = norm.stats
    assert (s.decode_failures, s.spec_drifts, s.gaps, s.crossed, s.exchange_errors) == (0, 0, 0, 0, 0)


def test_wire_futures_snapshot_asks_worst_first(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, "futures_book_snapshot_sndk")
    assert cmds == []
    no_problems(norm)
    changes = rows(norm, "book_changes", "symbol", "grouping", "is_snapshot", "seq", "prev_seq", "side", "price", "amount")
    assert sorted(changes) == sorted(
        [("SNDK-PERP", 0, True, 8896865, 8896864, "bid", p, a) for p, a in ((1876.90, 44.0), (1876.89, 122.0), (1876.87, 35.0))]
        + [("SNDK-PERP", 0, True, 8896865, 8896864, "ask", p, a) for p, a in ((1880.19, 900.0), (1880.00, 450.0), (1879.70, 450.0))]
    )
    # the best ask is the LAST ask of the snapshot (asks arrive worst-first)
    assert rows(norm, "quotes", "source", "bid_price", "bid_amount", "ask_price", "ask_amount", "seq", "timestamp") == [
        ("book", 1876.90, 44.0, 1879.70, 450.0, 8896865, 1790134937297000)
    ]
    snap = norm.buffers.take("book_snapshots")
    assert [snap[f"bids[{i}].price"] for i in range(4)] == [[1876.90], [1876.89], [1876.87], [None]]
    assert [snap[f"asks[{i}].price"] for i in range(4)] == [[1879.70], [1880.00], [1880.19], [None]]
    assert [k for (k,) in rows(norm, "events", "kind")] == ["synced"]


def test_wire_delta_before_any_snapshot_is_only_counted(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, "futures_book_delta_btc")
    assert cmds == [] and pending(norm) == {}
    assert norm.stats.deltas_skipped == 1
    no_problems(norm)


def test_doc_spot_snapshot_then_delta_on_the_ungrouped_topic(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    # doc-old: snapshot on update:BTC-USD_0, the next delta (seqNum +1) on update:BTC-USD
    norm, cmds = run(make_registry, frames, "spot_book_snapshot_doc", "spot_book_delta_doc")
    assert cmds == []
    no_problems(norm)
    assert norm.stats.deltas_skipped == 0
    changes = rows(norm, "book_changes", "is_snapshot", "seq", "side", "price", "amount")
    assert [c for c in changes if not c[0]] == [(False, 628283, "ask", 59367.5, 2.15622), (False, 628283, "ask", 59325.5, 0.0)]
    assert len([c for c in changes if c[0]]) == 10
    quotes = rows(norm, "quotes", "bid_price", "bid_amount", "ask_price", "ask_amount", "seq")
    assert quotes[0] == (59252.5, 0.06865, 59278.5, 0.01472, 628282)
    book = norm.books[("spot", "BTC-USD", 0)]
    assert book.last_seq == 628283 and book.best_ask() == (59278.5, 0.01472)


def test_doc_futures_snapshot_is_crossed_and_resubscribed(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, "futures_book_snapshot_doc_crossed")
    assert [(c.topic, c.reason) for c in cmds] == [("update:BTC-PERP_0", "crossed")]
    assert [k for (k,) in rows(norm, "events", "kind")] == ["synced", "crossed", "resync"]


@pytest.mark.parametrize(
    ("name", "product", "symbol", "bid", "ask", "ts_ms"),
    [
        ("futures_l1_eth", "futures", "ETH-PERP", (2766.67, 165900.0), (2766.68, 2366.0), 1790134133193),
        ("futures_l1_ethpfc_legacy", "futures", "ETH-PERP", (4386.37, 8403.0), (4386.58, 8860.0), 1759373840687),
        ("futures_l1_grouped_doc", "futures", "BTC-PERP", (28064.9, 1268.0), (28065.0, 1015.0), 1680751558529),
        ("spot_l1_doc", "spot", "BTC-USD", (28016.7, 1.48063), (28033.6, 1.34133), 1680750154232),
    ],
)
def test_l1_frames_become_l1_quotes(make_registry, frames, name, product, symbol, bid, ask, ts_ms) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, name)
    assert cmds == []
    no_problems(norm)
    assert rows(norm, "quotes", "product", "symbol", "source", "bid_price", "bid_amount", "ask_price", "ask_amount", "timestamp") == [
        (product, symbol, "l1", *bid, *ask, ts_ms * 1000)
    ]
    assert pending(norm) == {}


@pytest.mark.parametrize(
    ("name", "product", "expected"),
    [
        ("futures_trades_v3", "futures", ("BTC-PERP", "57971633", "sell", 86641.9, 70.0, 1790134428345000)),
        ("futures_trades_v3_doc", "futures", ("BTC-PERP", "927002515", "sell", 111144.8, 152.0, 1752129545326000)),
        ("futures_trades_legacy_bare_topic", "futures", ("BTC-PERP", "929934907", "buy", 117661.3, 13.0, 1759326050158000)),
        ("spot_trades_doc", "spot", ("BTC-USD", "118974855", "sell", 5302.8, 0.007, 1584446020295000)),
    ],
)
def test_trade_frames_become_trade_rows(make_registry, frames, name, product, expected) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, name)
    assert cmds == []
    no_problems(norm)
    assert rows(norm, "trades", "product", "symbol", "id", "side", "price", "amount", "timestamp") == [(product, *expected)]
    assert pending(norm) == {}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("futures_notification_v4_inserted", "notifications"),
        ("futures_notification_v4_reject", "notifications"),
        ("futures_fills_v2", "fills"),
        ("futures_all_position_v4", "all_positions"),
        ("futures_all_position_v4_flat", "all_positions"),
        ("futures_positions_v3_closed", "positions"),
        ("spot_notification_v3_doc", "notifications"),
    ],
)
def test_private_frames_are_recognised_counted_and_match_the_spec(make_registry, registry, frames, name, kind) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, name)
    assert cmds == [] and pending(norm) == {}
    assert norm.stats.private_messages == 1
    no_problems(norm)
    f = frames[name]
    product = f["server"]
    rec = Decoder(make_registry(), product).decode(f["frame"], 1)
    assert isinstance(rec, PrivateMessage) and rec.kind == kind
    # the spec's payload schema accepts the real frame (private frames are not sampled in flight)
    payload = json.loads(f["frame"])
    channel, _ = registry.match(product, payload["topic"])
    registry.validate(channel, payload)


def test_acks(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, "subscribe_ack", "subscribe_ack_empty", "unsubscribe_ack", "private_subscribe_ack")
    assert cmds == [
        Acknowledged("spot#0", "subscribe", ("tradeHistoryApi:BTC-USD",)),
        Acknowledged("spot#0", "subscribe", ()),
        Acknowledged("futures_oss#0", "unsubscribe", ("update:ETH-PERP-USDT_0",)),
        Acknowledged("futures#0", "subscribe", ("positionsV3",)),
    ]
    assert rows(norm, "events", "kind", "topic", "count") == [
        ("subscribed", "tradeHistoryApi:BTC-USD", None),
        ("subscribed", None, 0),
        ("unsubscribed", "update:ETH-PERP-USDT_0", None),
        ("subscribed", "positionsV3", None),
    ]


def test_login_and_pong(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, "login_ack", "pong")
    assert [type(c).__name__ for c in cmds] == ["AuthResult", "Pong"]
    assert cmds[0].success is True
    assert rows(norm, "events", "kind", "detail") == [("auth", "login ok")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("oss_error_two_args", [(1005, "Topic provided does not exist.", "foo:BTC-PERP"), (1000, "Market pair provided is currently not supported.", "update:NOPE-PERP_0")]),
        ("oss_error_no_arg", [(1001, "Operation provided is currently not supported", None)]),
        ("oss_error_doc", [(1000, "Market pair provided is currently not supported.", "update:BTCC-USD_0")]),
        ("oss_error_old_format", [(None, "MARKET_PAIR_NOT_SUPPORT", "update:BTCC-USD_0")]),
        ("rest_style_auth_error", [(-7, "Authenticate failed", None)]),
        ("rest_style_session_expired", [(10002, "User session is expired. Please login again", None)]),
    ],
)
def test_error_frames_in_every_shape(make_registry, frames, name, expected) -> None:  # type: ignore[no-untyped-def]
    norm, cmds = run(make_registry, frames, name)
    conn = f"{frames[name]['server']}#0"
    assert cmds == [ExchangeErrorSeen(conn, code, message, topic) for code, message, topic in expected]
    evs = rows(norm, "events", "kind", "topic", "detail")
    assert [(k, t, json.loads(d)) for k, t, d in evs] == [
        ("error", topic, {"code": code, "message": message}) for code, message, topic in expected
    ]
    assert norm.stats.decode_failures == 0


def test_rest_style_error_decodes_with_its_status(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    rec = Decoder(make_registry(), "futures").decode(frames["rest_style_auth_error"]["frame"], 1)
    assert isinstance(rec, ExchangeErrorFrame) and rec.severity == "HTTP 400"


def test_otc_quote_doc_joined_with_its_request(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm = Normalizer(make_registry(), validate_sample_rate=1.0)
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 10, "BTC")
    COVERED.add("otc_quote_doc")
    assert norm.feed("otc#0", "otc", frames["otc_quote_doc"]["frame"], T0) == []
    no_problems(norm)
    assert rows(
        norm, "otc_quotes", "symbol", "quantity", "currency", "buy_quote_id", "buy_quantity", "buy_unit_price", "buy_total_amount",
        "sell_quote_id", "sell_quantity", "sell_unit_price", "sell_total_amount", "status", "reason",
    ) == [
        (
            "BTC-USD", 10.0, "BTC", "015f05ba-1d55-46d7-94d9-214229414ae7", 10.0, 47865.580838, 478655.80838,
            "0683a41a-a2ad-467b-99b3-241f3ab0cec4", 10.0, 47649.40351972, 476494.0352, None, None,
        )
    ]


def test_otc_quote_with_a_numeric_status_keeps_the_quote(make_registry) -> None:  # type: ignore[no-untyped-def]
    # §4.2 documents status as a String; BTSE's OTC status codes are numbers (30001 ...)
    text = '{"topic":"quote","buyQuoteId":"a","sellQuoteId":null,"clOrderId":"c1","buyQuantity":"1","buyUnitPrice":47865.5,"buyTotalAmount":47865.5,"sellQuantity":null,"sellUnitPrice":null,"sellTotalAmount":null,"status":30001,"reason":null}'
    rec = Decoder(make_registry(), "otc").decode(text, 1)
    assert isinstance(rec, OtcQuote), rec
    assert (rec.status, rec.buy_quantity, rec.buy_unit_price, rec.sell_quantity) == ("30001", 1.0, 47865.5, None)


def test_trade_ids_that_restart_lower_are_not_mistaken_for_duplicates(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    # §3.3.1/§3.5: tradeHistoryApiV3 doc example 927002515 (Jul 2025), legacy wire 929934907
    # (Oct 2025), V3 wire 57971633 (Sep 2026): BTSE's tradeId sequence went back down.
    legacy, v3 = frames["futures_trades_legacy_bare_topic"]["frame"], frames["futures_trades_v3"]["frame"]
    COVERED.add("futures_trades_v3")
    norm, _ = run(make_registry, frames, "futures_trades_legacy_bare_topic")  # stored: 929934907
    norm.feed("futures#0", "futures", v3, T0 + 10)
    norm.feed("futures#0", "futures", legacy, T0 + 11)  # re-sent after a resubscribe
    assert rows(norm, "trades", "id", "timestamp") == [("929934907", 1759326050158000), ("57971633", 1790134428345000)]
    assert norm.stats.trade_duplicates == 1
    # after a restart: the store's newest trade is the Oct 2025 one
    restarted = Normalizer(make_registry(), validate_sample_rate=1.0)
    restarted.seed_stored_trades("futures", "BTC-PERP", 1759326050158000, ["929934907"])
    restarted.feed("futures#0", "futures", legacy, T0 + 20)  # re-sent batch: already stored
    restarted.feed("futures#0", "futures", v3, T0 + 21)  # newer, with a much lower id: kept
    assert rows(restarted, "trades", "id") == [("57971633",)]
    assert restarted.stats.trade_duplicates == 1
    assert restarted.newest_trade_us("futures", "BTCPFC") == 1790134428345000


def test_every_captured_frame_has_a_golden_test(frames) -> None:  # type: ignore[no-untyped-def]
    # runs last in this module (pytest keeps file order): every frame was fed above
    assert sorted(set(frames) - COVERED) == []
