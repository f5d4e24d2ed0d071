"""The normalizer: rows per table, events and commands for every protocol rule and fault."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.protocol import (
    Acknowledged,
    AuthResult,
    ExchangeErrorSeen,
    Normalizer,
    Pong,
    Resubscribe,
)
from collector.protocol.book import LIVE, RESYNCING, SYNCING
from collector.protocol.normalizer import quantity_in_quote_currency
from collector.protocol.rows import COLUMNS, TableBuffers, as_lists

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000  # one second in µs
T0 = 1_790_000_000 * S


def book_frame(seq: int, bids: list[list[str]], asks: list[list[str]], kind: str = "delta", symbol: str = "BTC-PERP", topic: str | None = None) -> str:
    return json.dumps(
        {
            "topic": topic or f"update:{symbol}_0",
            "data": {"bids": bids, "asks": asks, "seqNum": seq, "prevSeqNum": seq - 1, "type": kind, "symbol": symbol, "timestamp": 1790134937297},
        }
    )


SNAP = book_frame(100, [["100.0", "5"], ["99.5", "3"]], [["101.5", "2"], ["101.0", "1"]], "snapshot")


@pytest.fixture
def norm(make_registry) -> Normalizer:  # type: ignore[no-untyped-def]
    return Normalizer(make_registry(), snapshot_interval_s=10, validate_sample_rate=0)


def events(n: Normalizer) -> list[dict[str, Any]]:
    cols = n.buffers.take("events")
    return [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def test_columns_are_exactly_the_schema_files() -> None:
    for table, names in COLUMNS.items():
        schema = yaml.safe_load((REPO / "schemas" / f"{table}.yaml").read_text())
        assert tuple(c["name"] for c in schema["columns"]) == names, table


def test_snapshot_then_deltas_rows(norm: Normalizer) -> None:
    assert norm.feed("futures_oss#0", "futures_oss", SNAP, T0) == []
    assert norm.feed("futures_oss#0", "futures_oss", book_frame(101, [["100.0", "6"]], [["102.0", "4"]]), T0 + 1) == []
    assert norm.feed("futures_oss#0", "futures_oss", book_frame(102, [["98.0", "1"]], []), T0 + 2) == []
    bc = as_lists(norm.buffers.take("book_changes"))
    assert bc["is_snapshot"] == [True] * 4 + [False] * 3
    assert bc["side"] == ["bid", "bid", "ask", "ask", "bid", "ask", "bid"]
    assert bc["price"] == [100.0, 99.5, 101.0, 101.5, 100.0, 102.0, 98.0]
    assert bc["amount"] == [5.0, 3.0, 1.0, 2.0, 6.0, 4.0, 1.0]
    assert bc["seq"] == [100] * 4 + [101, 101, 102]
    assert bc["prev_seq"] == [99] * 4 + [100, 100, 101]
    assert bc["timestamp"] == [1790134937297000] * 7
    assert bc["local_timestamp"] == [T0] * 4 + [T0 + 1] * 2 + [T0 + 2]
    assert set(bc["exchange"]) == {"btse"} and set(bc["symbol"]) == {"BTC-PERP"} and set(bc["grouping"]) == {0}
    assert as_lists(norm.buffers.take("book_changes"))["price"] == []  # handed over and reset
    q = norm.buffers.take("quotes")
    # after sync, then the delta changed the best bid amount; the deep bid did not touch the top
    assert q["bid_amount"] == [5.0, 6.0] and q["ask_price"] == [101.0, 101.0] and q["source"] == ["book", "book"]
    assert q["seq"] == [100, 101]
    snaps = norm.buffers.take("book_snapshots")
    assert snaps["bids[0].price"] == [100.0] and snaps["asks[1].price"] == [101.5] and snaps["asks[2].price"] == [None]
    (ev,) = events(norm)
    assert ev["kind"] == "synced" and ev["received_seq"] == 100 and ev["count"] == 0


def test_gap_resubscribes_and_writes_nothing_until_next_snapshot(norm: Normalizer) -> None:
    c = "futures_oss#1"
    norm.feed(c, "futures_oss", SNAP, T0)
    norm.buffers.take_all()
    cmds = norm.feed(c, "futures_oss", book_frame(103, [["100.0", "1"]], []), T0 + 1)  # 101, 102 lost
    assert cmds == [Resubscribe(c, "update:BTC-PERP_0", "gap")]
    book = norm.books[("futures", "BTC-PERP", 0)]
    assert book.state is RESYNCING
    assert norm.feed(c, "futures_oss", book_frame(104, [["100.0", "2"]], []), T0 + 2) == []  # no second command
    assert norm.buffers.pending("book_changes") == 0 and norm.buffers.pending("quotes") == 0
    evs = events(norm)
    assert [(e["kind"], e["expected_seq"], e["received_seq"]) for e in evs] == [("gap", 100, 102), ("resync", None, None)]
    assert evs[0]["connection"] == c and evs[0]["topic"] == "update:BTC-PERP_0"
    norm.feed(c, "futures_oss", book_frame(200, [["100.0", "7"]], [["101.0", "1"]], "snapshot"), T0 + 3)
    assert book.state is LIVE
    bc = as_lists(norm.buffers.take("book_changes"))
    assert bc["is_snapshot"] == [True, True] and bc["seq"] == [200, 200]
    (synced,) = events(norm)
    assert synced["kind"] == "synced" and synced["count"] == 1  # the delta skipped while resyncing


def test_duplicate_is_an_event_not_a_resync(norm: Normalizer) -> None:
    norm.feed("c", "futures_oss", SNAP, T0)
    d = book_frame(101, [["100.0", "6"]], [])
    norm.feed("c", "futures_oss", d, T0 + 1)
    norm.buffers.take_all()
    assert norm.feed("c", "futures_oss", d, T0 + 2) == []
    (ev,) = events(norm)
    assert (ev["kind"], ev["expected_seq"], ev["received_seq"], ev["count"]) == ("duplicate", 101, 101, 1)
    assert norm.buffers.pending("book_changes") == 0
    assert norm.books[("futures", "BTC-PERP", 0)].state is LIVE


def test_crossed_book_resubscribes_and_drops_the_crossing_delta(norm: Normalizer) -> None:
    norm.feed("c", "futures_oss", SNAP, T0)
    norm.buffers.take_all()
    cmds = norm.feed("c", "futures_oss", book_frame(101, [["101.0", "1"]], []), T0 + 1)
    assert cmds == [Resubscribe("c", "update:BTC-PERP_0", "crossed")]
    assert [e["kind"] for e in events(norm)] == ["crossed", "resync"]
    assert norm.buffers.pending("book_changes") == 0


def test_crossed_snapshot_from_the_docs_is_flagged(norm: Normalizer, frames) -> None:  # type: ignore[no-untyped-def]
    cmds = norm.feed("c", "futures_oss", frames["futures_book_snapshot_doc_crossed"]["frame"], T0)
    assert cmds == [Resubscribe("c", "update:BTC-PERP_0", "crossed")]
    assert [e["kind"] for e in events(norm)] == ["synced", "crossed", "resync"]


def test_deltas_before_snapshot_are_counted_in_synced_event(norm: Normalizer) -> None:
    for s in (95, 96, 97):
        norm.feed("c", "futures_oss", book_frame(s, [["1", "1"]], []), T0 + s)
    assert norm.buffers.pending("book_changes") == 0
    norm.feed("c", "futures_oss", SNAP, T0 + 100)
    (ev,) = events(norm)
    assert ev["kind"] == "synced" and ev["count"] == 3
    assert norm.stats.deltas_skipped == 3


def test_folded_spelling_routes_to_one_book_and_resubscribes_the_subscribed_topic(norm: Normalizer) -> None:
    # BTSE: snapshot on the subscribed "-PERP-USDT" topic, deltas on update:BTC-PERP_0 (§3.0)
    norm.feed("c", "futures_oss", book_frame(100, [["100.0", "5"]], [["101.0", "1"]], "snapshot", symbol="BTC-PERP-USDT"), T0)
    norm.feed("c", "futures_oss", book_frame(101, [["100.0", "6"]], []), T0 + 1)
    assert list(norm.books) == [("futures", "BTC-PERP", 0)]
    assert set(as_lists(norm.buffers.take("book_changes"))["symbol"]) == {"BTC-PERP"}
    cmds = norm.feed("c", "futures_oss", book_frame(105, [], []), T0 + 2)
    assert cmds == [Resubscribe("c", "update:BTC-PERP-USDT_0", "gap")]


def test_book_snapshots_on_interval_from_frame_times(norm: Normalizer) -> None:
    norm.feed("c", "futures_oss", SNAP, T0 + 1)  # sync: one snapshot row
    for i in range(1, 40):  # one delta per second for 39 s; interval 10 s
        norm.feed("c", "futures_oss", book_frame(100 + i, [["99.0", str(i)]], []), T0 + i * S)
    snaps = norm.buffers.take("book_snapshots")
    assert snaps["local_timestamp"] == [T0 + 1, T0 + 10 * S, T0 + 20 * S, T0 + 30 * S]
    assert snaps["seq"] == [100, 110, 120, 130]
    assert snaps["bids[2].amount"] == [None, 10.0, 20.0, 30.0]


def test_disconnect_and_subscribe_hooks_reset_books(norm: Normalizer) -> None:
    norm.feed("futures_oss#0", "futures_oss", SNAP, T0)
    norm.buffers.take_all()
    norm.on_disconnect("futures_oss#0", ["update:BTC-PERP_0"], T0 + 5, reason="close 1006")
    book = norm.books[("futures", "BTC-PERP", 0)]
    assert book.state is SYNCING and len(book) == 0
    (ev,) = events(norm)
    assert (ev["kind"], ev["connection"], ev["detail"], ev["local_timestamp"]) == ("disconnected", "futures_oss#0", "close 1006", T0 + 5)
    norm.feed("futures_oss#0", "futures_oss", book_frame(101, [["1", "1"]], []), T0 + 6)
    assert norm.buffers.pending("book_changes") == 0
    norm.on_subscribe_sent("futures_oss#0", ["update:ETH-PERP_0"], T0 + 7)
    assert norm.books[("futures", "ETH-PERP", 0)].state is SYNCING
    assert [e["kind"] for e in events(norm)] == ["subscribe_sent"]


def test_subscribe_sent_resets_only_the_books_of_its_topics(norm: Normalizer) -> None:
    conn = "futures_oss#0"
    eth_snap = book_frame(500, [["10.0", "1"]], [["11.0", "1"]], "snapshot", symbol="ETH-PERP")
    norm.feed(conn, "futures_oss", SNAP, T0)
    norm.feed(conn, "futures_oss", eth_snap, T0)
    norm.buffers.take_all()
    # a per-topic resync of BTC-PERP: ETH-PERP on the same socket keeps its book and keeps flowing
    norm.on_subscribe_sent(conn, ["update:BTC-PERP_0"], T0 + 1, server_name="futures_oss")
    btc = norm.books[("futures", "BTC-PERP", 0)]
    eth = norm.books[("futures", "ETH-PERP", 0)]
    assert btc.state is SYNCING and len(btc) == 0
    assert eth.state is LIVE and eth.top == (10.0, 1.0, 11.0, 1.0)
    eth_delta = json.loads(book_frame(501, [["10.5", "2"]], [], symbol="ETH-PERP"))
    norm.feed(conn, "futures_oss", json.dumps(eth_delta), T0 + 2)
    assert eth.top == (10.5, 2.0, 11.0, 1.0)
    bc = as_lists(norm.buffers.take("book_changes"))
    assert (bc["symbol"], bc["price"], bc["seq"]) == (["ETH-PERP"], [10.5], [501])
    assert [(e["kind"], e["topic"]) for e in events(norm)] == [("subscribe_sent", "update:BTC-PERP_0")]
    # a disconnect still resets every book the connection was feeding
    norm.on_disconnect(conn, [], T0 + 3, server_name="futures_oss")
    assert eth.state is SYNCING and len(eth) == 0


def trades_frame(*trades: tuple[int | str, int]) -> str:
    """A tradeHistoryApiV3:BTC-PERP frame of (tradeId, timestamp ms) trades, in this order."""
    data = [{"price": 86641.9, "size": 70, "side": "SELL", "symbol": "BTC-PERP", "tradeId": i, "timestamp": ms} for i, ms in trades]
    return json.dumps({"topic": "tradeHistoryApiV3:BTC-PERP", "data": data})


MS = 1790134428345  # a trade time, ms


def test_trades_deduplicated_with_bounded_memory(make_registry) -> None:  # type: ignore[no-untyped-def]
    norm = Normalizer(make_registry(), validate_sample_rate=0, trade_memory=3)
    norm.feed("f", "futures", trades_frame((5, MS + 5), (4, MS + 4), (3, MS + 3)), T0)  # batch after subscribe, newest first
    norm.feed("f", "futures", trades_frame((6, MS + 6), (5, MS + 5), (4, MS + 4)), T0 + 1)  # re-sent after resubscribe
    norm.feed("f", "futures", trades_frame((7, MS + 7)), T0 + 2)
    assert norm.buffers.take("trades")["id"] == ["5", "4", "3", "6", "7"]
    assert norm.stats.trade_duplicates == 2
    assert norm.newest_trade_us("futures", "BTC-PERP") == (MS + 7) * 1000
    norm.feed("f", "futures", trades_frame((3, MS + 3), (4, MS + 4)), T0 + 3)  # evicted: older than the time floor
    assert norm.buffers.pending("trades") == 0
    # ids going back down with newer times are new trades, in the recent window or not
    norm.feed("f", "futures", trades_frame((2, MS + 8), (1, MS + 9), (3, MS + 10)), T0 + 4)
    assert norm.buffers.take("trades")["id"] == ["2", "1", "3"]
    assert norm.stats.trade_duplicates == 4
    assert norm.trade_duplicates() == {("futures", "BTC-PERP"): 4}  # per market: the metric


def test_trades_seeded_from_the_store_after_a_restart(make_registry) -> None:  # type: ignore[no-untyped-def]
    norm = Normalizer(make_registry(), validate_sample_rate=0)
    # the store's newest BTC-PERP trades: ids 900 and 901, both at MS (seeded under the legacy alias: folded)
    norm.seed_stored_trades("futures", "BTCPFC", MS * 1000, ["900", "901"])
    assert norm.newest_trade_us("futures", "BTC-PERP") == MS * 1000
    # the batch re-sent on subscribe, newest first: made while the collector was down (12, 11,
    # and 902 in the same millisecond as the stored ones), then already stored
    norm.feed("f", "futures", trades_frame((12, MS + 2), (11, MS + 1), (902, MS), (901, MS), (900, MS), (899, MS - 1)), T0)
    assert norm.buffers.take("trades")["id"] == ["12", "11", "902"]
    assert norm.stats.trade_duplicates == 3
    norm.feed("f", "futures", trades_frame((13, MS + 3), (12, MS + 2), (11, MS + 1)), T0 + 1)  # reconnect
    assert norm.buffers.take("trades")["id"] == ["13"]
    # non-numeric ids work the same way
    norm.seed_stored_trades("spot", "BTC-USD", MS * 1000, ["b"])
    text = json.dumps({"topic": "tradeHistoryApi:BTC-USD", "data": [{"symbol": "BTC-USD", "side": "BUY", "size": 0.1, "price": 1.0, "tradeId": i, "timestamp": ms} for i, ms in (("c", MS), ("b", MS), ("a", MS - 1))]})
    norm.feed("s", "spot", text, T0 + 2)
    assert norm.buffers.take("trades")["id"] == ["c"]


def test_l1_quotes(norm: Normalizer, frames) -> None:  # type: ignore[no-untyped-def]
    norm.feed("o", "futures_oss", frames["futures_l1_eth"]["frame"], T0)
    q = norm.buffers.take("quotes")
    assert (q["source"], q["bid_price"], q["bid_amount"], q["ask_price"], q["ask_amount"], q["grouping"], q["seq"]) == (
        ["l1"], [2766.67], [165900.0], [2766.68], [2366.0], [None], [None]
    )
    assert q["timestamp"] == [1790134133193000] and q["local_timestamp"] == [T0]


def test_otc_quotes_joined_with_their_request(norm: Normalizer, frames) -> None:  # type: ignore[no-untyped-def]
    text = frames["otc_quote_doc"]["frame"]
    norm.feed("otc#0", "otc", text, T0)  # no request known: event, no row
    assert norm.buffers.pending("otc_quotes") == 0
    assert [e["kind"] for e in events(norm)] == ["otc_unmatched"]
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 10, "BTC")
    norm.feed("otc#0", "otc", text, T0 + 1)
    row = norm.buffers.take("otc_quotes")
    assert row["symbol"] == ["BTC-USD"] and row["quantity"] == [10.0] and row["currency"] == ["BTC"]
    assert row["buy_unit_price"] == [47865.580838] and row["timestamp"] == [None]
    norm.on_otc_unsubscribe("otc#0")
    norm.feed("otc#0", "otc", text, T0 + 2)
    assert norm.buffers.pending("otc_quotes") == 0


def otc_quote(buy: tuple[float, float, float] | None, sell: tuple[float, float, float] | None, symbol: str | None = None) -> str:
    """A §4.2 quote message, clOrderId echoed as null; buy/sell: (quantity, unit price, total amount)."""
    msg: dict[str, Any] = {"topic": "quote", "buyQuoteId": "b" if buy else None, "sellQuoteId": "s" if sell else None, "clOrderId": None}
    for side, q in (("buy", buy), ("sell", sell)):
        msg[f"{side}Quantity"], msg[f"{side}UnitPrice"], msg[f"{side}TotalAmount"] = q or (None, None, None)
    msg |= {"status": None, "reason": None}
    if symbol:
        msg["symbol"] = symbol
    return json.dumps(msg)


def test_otc_quotes_matched_by_total_amount_for_a_quote_currency_quantity(norm: Normalizer) -> None:
    # §4.2: buyQuantity/sellQuantity are in the base currency, the total amounts in the quote currency
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 1, "BTC")
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 50000, "USD")
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 10, "USD")
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 10, "BTC")  # same number, base currency: another request
    norm.feed("otc#0", "otc", otc_quote((1, 47865.58, 47865.58), (1, 47649.4, 47649.4)), T0)
    norm.feed("otc#0", "otc", otc_quote((1.04458, 47865.58, 50000), (1.04932, 47649.4, 50000), "BTC-USD"), T0 + 1)
    norm.feed("otc#0", "otc", otc_quote((0.000209, 47865.58, 10), None), T0 + 2)  # buy side only
    norm.feed("otc#0", "otc", otc_quote(None, (10, 47649.4, 476494.0)), T0 + 3)  # sell side only
    rows = as_lists(norm.buffers.take("otc_quotes"))
    assert list(zip(rows["quantity"], rows["currency"], rows["buy_total_amount"], rows["sell_quantity"], strict=True)) == [
        (1.0, "BTC", 47865.58, 1.0),
        (50000.0, "USD", 50000.0, 1.04932),
        (10.0, "USD", 10.0, None),
        (10.0, "BTC", None, 10.0),
    ]
    assert norm.stats.otc_unmatched == 0
    # a quote for no request's quantity, with several requests: no guess
    norm.feed("otc#0", "otc", otc_quote((2, 47865.58, 95731.16), None), T0 + 4)
    assert norm.buffers.pending("otc_quotes") == 0 and [e["kind"] for e in events(norm)] == ["otc_unmatched"]
    # unsubscribing one currency leaves the request of the other
    norm.on_otc_unsubscribe("otc#0", "BTC-USD", 10, currency="USD")
    norm.on_otc_unsubscribe("otc#0", "BTC-USD", 50000)
    norm.on_otc_unsubscribe("otc#0", "BTC-USD", 1, currency="BTC")
    norm.feed("otc#0", "otc", otc_quote((0.000209, 47865.58, 10), None), T0 + 5)  # the one left: joined to it
    assert as_lists(norm.buffers.take("otc_quotes"))["currency"] == ["BTC"]


def test_otc_quantity_currency_kinds() -> None:
    assert quantity_in_quote_currency("BTC-USD", "USD") is True
    assert quantity_in_quote_currency("BTC-USD", "usd") is True
    assert quantity_in_quote_currency("BTC-USD", "BTC") is False
    assert quantity_in_quote_currency("BTC-SGD", "USDT") is None
    assert quantity_in_quote_currency("BTCUSD", "USD") is None


def test_otc_request_in_neither_currency_matches_any_amount(norm: Normalizer) -> None:
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 2, "BTC")
    norm.on_otc_quote_sent("otc#0", "BTC-USD", 1000, "USDT")
    norm.feed("otc#0", "otc", otc_quote((0.0209, 47865.58, 1000), None), T0)
    assert as_lists(norm.buffers.take("otc_quotes"))["currency"] == ["USDT"]


def test_control_frames_become_commands_and_events(norm: Normalizer, frames) -> None:  # type: ignore[no-untyped-def]
    assert norm.feed("s", "spot_oss", "pong", T0) == [Pong("s", T0)]
    assert norm.feed("s", "spot", frames["subscribe_ack"]["frame"], T0) == [Acknowledged("s", "subscribe", ("tradeHistoryApi:BTC-USD",))]
    assert norm.feed("f", "futures", frames["login_ack"]["frame"], T0) == [AuthResult("f", True, "login ok")]
    cmds = norm.feed("o", "futures_oss", frames["oss_error_two_args"]["frame"], T0)
    assert cmds == [
        ExchangeErrorSeen("o", 1005, "Topic provided does not exist.", "foo:BTC-PERP"),
        ExchangeErrorSeen("o", 1000, "Market pair provided is currently not supported.", "update:NOPE-PERP_0"),
    ]
    buffer_full = '{"severity":"ERROR","errors":[{"error":{"code":1007,"message":"User message buffer is full."}}]}'
    assert norm.feed("o", "futures_oss", buffer_full, T0)[0].code == 1007
    evs = events(norm)
    assert [e["kind"] for e in evs] == ["subscribed", "auth", "error", "error", "error"]
    # the detail of an exchange error is JSON (schemas/events.yaml)
    assert json.loads(evs[3]["detail"]) == {"code": 1000, "message": "Market pair provided is currently not supported."}
    assert json.loads(evs[4]["detail"]) == {"code": 1007, "message": "User message buffer is full."}


def test_decode_errors_and_spec_drift_are_events(make_registry, frames) -> None:  # type: ignore[no-untyped-def]
    norm = Normalizer(make_registry(drift_kinds=("l1",)), validate_sample_rate=1.0)
    assert norm.feed("s", "spot_oss", "hello", T0) == []
    norm.feed("s", "spot_oss", frames["spot_l1_doc"]["frame"], T0 + 1)
    evs = events(norm)
    assert [e["kind"] for e in evs] == ["decode_error", "spec_drift"]
    assert "not JSON" in evs[0]["detail"] and "hello" in evs[0]["detail"]
    assert "$.data.extra" in evs[1]["detail"]
    assert norm.buffers.pending("quotes") == 1  # the drifting frame is kept
    assert (norm.stats.decode_failures, norm.stats.spec_drifts) == (1, 1)


def test_config_is_checked(make_registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="snapshot_depth"):
        Normalizer(make_registry(), snapshot_depth=26)
    with pytest.raises(ValueError, match="validate_sample_rate"):
        Normalizer(make_registry(), validate_sample_rate=2)
    with pytest.raises(ValueError, match="snapshot_interval_s"):
        Normalizer(make_registry(), snapshot_interval_s=0)


# the state machine never emits book rows while not LIVE -----------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("delta"), st.integers(min_value=-2, max_value=3)),  # seq step (1 = clean)
        st.tuples(st.just("snapshot"), st.integers(min_value=1, max_value=5)),
        st.tuples(st.just("disconnect"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(ops, st.randoms(use_true_random=False))
def test_no_book_rows_while_not_live(registry, steps, rnd) -> None:  # type: ignore[no-untyped-def]
    norm = Normalizer(registry, validate_sample_rate=0)
    key = ("futures", "BTC-PERP", 0)
    seq = 100
    for i, (op, step) in enumerate(steps):
        ts = T0 + i
        if op == "disconnect":
            norm.on_disconnect("c", ["update:BTC-PERP_0"], ts)
            continue
        before = norm.books[key].state if key in norm.books else SYNCING
        seq += step
        bid = rnd.choice(["99", "99.5", "100"])
        ask = rnd.choice(["100.5", "101", "99.5"])  # sometimes crossing
        frame = book_frame(seq, [[bid, str(rnd.randint(0, 3))]], [[ask, str(rnd.randint(0, 3))]], op)
        pending = norm.buffers.pending("book_changes")
        norm.feed("c", "futures_oss", frame, ts)
        wrote = norm.buffers.pending("book_changes") > pending
        if op == "delta":
            assert not wrote or (before is LIVE and norm.books[key].state is LIVE)
        if wrote and op == "delta":
            bc = as_lists(norm.buffers.take("book_changes"))
            assert bc["is_snapshot"][-1] is False


def test_protocol_core_imports_no_network_code() -> None:
    code = (
        "import sys\n"
        "import collector.protocol, collector.protocol.normalizer, collector.protocol.decode\n"
        "import collector.protocol.frames, collector.protocol.auth, collector.protocol.rows\n"
        "import collector.protocol.book, collector.protocol.native  # the C speedups too\n"
        "bad = [m for m in ('asyncio', 'websockets', 'aiohttp') if m in sys.modules]\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 0, f"protocol core imported {proc.stdout.strip()} {proc.stderr}"


def test_table_buffers_unknown_table_is_named() -> None:
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        TableBuffers().take("nope")


def test_book_changes_hand_over_is_arrow_the_store_accepts(norm: Normalizer) -> None:
    from collector.storage.schemas import load_schemas
    from collector.storage.writer import to_arrow

    norm.feed("c", "futures_oss", SNAP, T0)
    norm.feed("c", "futures_oss", book_frame(101, [], [["101.0", "0"]]), T0 + 1)  # no bids
    norm.feed("c", "futures_oss", book_frame(102, [], []), T0 + 2)  # no level at all
    norm.feed("c", "futures_oss", book_frame(103, [["99.0", "1"]], []), T0 + 3)  # no asks
    batch = norm.buffers.take_all()["book_changes"]
    table = to_arrow(load_schemas()["book_changes"], batch)
    assert table.num_rows == 6
    rows = table.to_pylist()
    assert [(r["side"], r["price"], r["amount"], r["seq"]) for r in rows] == [
        ("bid", 100.0, 5.0, 100),
        ("bid", 99.5, 3.0, 100),
        ("ask", 101.0, 1.0, 100),
        ("ask", 101.5, 2.0, 100),
        ("ask", 101.0, 0.0, 101),
        ("bid", 99.0, 1.0, 103),
    ]
    assert [r["is_snapshot"] for r in rows] == [True] * 4 + [False] * 2
    assert [r["prev_seq"] for r in rows] == [99] * 4 + [100, 102]
    assert rows[-1]["local_timestamp"].timestamp() * S == T0 + 3
    assert {(r["exchange"], r["product"], r["symbol"], r["grouping"]) for r in rows} == {
        ("btse", "futures", "BTC-PERP", 0)
    }
    # every column has the type of schemas/book_changes.yaml (timestamps: int64 µs, as in every
    # column batch; the Store casts them)
    import pyarrow as pa

    schema = load_schemas()["book_changes"]
    for name, column in batch.items():
        expected = schema.column(name).arrow_type
        assert column.type == (pa.int64() if pa.types.is_timestamp(expected) else expected), name


def test_feed_many_gives_the_rows_and_commands_of_feed_one_by_one(make_registry) -> None:  # type: ignore[no-untyped-def]
    c, s = "futures_oss#0", "futures_oss"
    run = [
        (c, s, SNAP, T0),
        (c, s, book_frame(101, [["100.0", "6"]], [["102.0", "4"]]), T0 + 1),
        (c, s, "not json", T0 + 2),
        (c, s, book_frame(103, [["100.0", "1"]], []), T0 + 3),  # gap: resubscribe
        (c, s, book_frame(104, [["100.0", "2"]], []), T0 + 4),  # skipped while resyncing
    ]
    one = Normalizer(make_registry(), snapshot_interval_s=10, validate_sample_rate=0)
    many = Normalizer(make_registry(), snapshot_interval_s=10, validate_sample_rate=0)
    one_cmds = [cmd for frame in run for cmd in one.feed(*frame)]
    many_cmds = many.feed_many(run)
    assert many_cmds == one_cmds == [Resubscribe(c, "update:BTC-PERP_0", "gap")]
    assert many.stats == one.stats and many.stats.frames == 5 and many.stats.gaps == 1
    for table in ("book_changes", "quotes", "book_snapshots", "events"):
        assert as_lists(many.buffers.take(table)) == as_lists(one.buffers.take(table)), table


def test_feed_many_hands_a_failing_frame_to_failed_and_goes_on(norm: Normalizer) -> None:
    c, s = "futures_oss#0", "futures_oss"
    failed: list[tuple[Any, Exception]] = []
    run: list[Any] = [(c, s, SNAP, T0), (c, s, 12345, T0 + 1), (c, s, book_frame(101, [["100.0", "6"]], []), T0 + 2)]
    assert norm.feed_many(run, lambda frame, exc: failed.append((frame, exc))) == []
    assert [f[0] for f in failed] == [run[1]] and isinstance(failed[0][1], AttributeError)
    assert as_lists(norm.buffers.take("book_changes"))["seq"] == [100] * 4 + [101]
    assert norm.stats.frames == 3
    with pytest.raises(AttributeError):  # without failed, the exception propagates
        norm.feed_many([(c, s, 12345, T0 + 3)])


def test_compact_and_spaced_json_book_frames_give_the_same_rows(make_registry) -> None:  # type: ignore[no-untyped-def]
    # BTSE sends compact JSON; other producers (Python's json.dumps) put a space after ':'.
    # Both take the same typed fast path and must give identical rows and events.
    frames = [SNAP, book_frame(101, [["100.0", "6"]], [["102.0", "4"]]), book_frame(103, [["98.0", "1"]], [])]
    compact = [json.dumps(json.loads(f), separators=(",", ":")) for f in frames]
    assert all(f.startswith('{"topic": "update:') for f in frames)
    assert all(f.startswith('{"topic":"update:') for f in compact)
    outputs = []
    for variant in (frames, compact):
        n = Normalizer(make_registry(), snapshot_interval_s=10, validate_sample_rate=0)
        cmds = [c for i, f in enumerate(variant) for c in n.feed("futures_oss#0", "futures_oss", f, T0 + i)]
        outputs.append((cmds, as_lists(n.buffers.take("book_changes")), events(n), n.stats.gaps))
    assert outputs[0] == outputs[1]
    assert outputs[0][3] == 1  # the gap 101 -> 103 was seen on both paths
