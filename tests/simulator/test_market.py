"""The pure market model, topic views and ground truth."""

from __future__ import annotations

import pytest

from collector.simulator.book import BookView
from collector.simulator.market import Market, format_units, symbol_info
from collector.simulator.truth import Truth, TruthError


def test_format_units_keeps_trailing_zeros() -> None:
    assert format_units(866260, 1) == "86626.0"
    assert format_units(50000, 5) == "0.50000"
    assert format_units(69350, 0) == "69350"
    assert symbol_info("futures", "BTC-PERP").price_str(866260) == "86626.0"


def test_same_seed_same_market_and_different_seed_differs() -> None:
    a = [Market("spot", "BTC-USD", 7).step() for _ in range(1)]
    m1, m2, m3 = Market("spot", "BTC-USD", 7), Market("spot", "BTC-USD", 7), Market("spot", "BTC-USD", 8)
    s1 = [m1.step() for _ in range(500)]
    s2 = [m2.step() for _ in range(500)]
    s3 = [m3.step() for _ in range(500)]
    assert s1 == s2
    assert s1 != s3
    assert a[0] == s1[0]


@pytest.mark.parametrize("product,symbol", [("spot", "BTC-USD"), ("futures", "BTC-PERP"), ("spot", "XYZ-USD")])
def test_book_stays_sane_and_trades_hit_the_touch(product: str, symbol: str) -> None:
    market = Market(product, symbol, 3)
    trade_ids = []
    for _ in range(5000):
        best_bid, best_ask = market.bids.best(), market.asks.best()
        step = market.step()
        if step.trade is not None:
            t = step.trade
            assert t.price_ticks == (best_ask if t.side == "BUY" else best_bid)
            assert t.size_lots > 0
            trade_ids.append(t.trade_id)
        assert market.bids.best() < market.asks.best()  # type: ignore[operator]
        assert 20 <= len(market.bids.prices) <= 60 and 20 <= len(market.asks.prices) <= 60
        assert step.changes
    assert trade_ids == sorted(trade_ids) and len(set(trade_ids)) == len(trade_ids) > 100


def test_view_window_delta_reproduces_the_book() -> None:
    market = Market("spot", "ETH-USD", 11)
    view = BookView(market, 0, 11)
    held = {"bid": dict(view.window["bid"]), "ask": dict(view.window["ask"])}
    seq = view.seq
    for _ in range(3000):
        delta = view.apply(market.step().changes)
        if delta is None:
            continue
        assert delta.seq == seq + 1
        seq = delta.seq
        for side, levels in (("bid", delta.bids), ("ask", delta.asks)):
            for price, size in levels:
                if size:
                    held[side][price] = size
                else:
                    held[side].pop(price)
        bids, asks = market.top(50)
        assert held["bid"] == dict(bids) and held["ask"] == dict(asks)


def test_grouped_view_aggregates_buckets() -> None:
    market = Market("spot", "BTC-USD", 5)
    view = BookView(market, 2, 5)  # bucket = 5 ticks
    for _ in range(500):
        view.apply(market.step().changes)
    bids, asks = view.levels()
    expected: dict[int, int] = {}
    for price, size in market.bids.levels.items():
        expected[price // 5 * 5] = expected.get(price // 5 * 5, 0) + size
    top = dict(sorted(expected.items(), reverse=True)[:50])
    assert dict(bids) == top
    assert all(p % 5 == 0 for p, _ in asks)
    assert bids[0][0] < asks[0][0]


def test_truth_answers_every_kept_seq_and_refuses_old_ones() -> None:
    market = Market("futures", "BTC-PERP", 2)
    view = BookView(market, 0, 2)
    truth = Truth(history=300)
    bids, asks = view.levels()
    truth.open_chain("futures", "BTC-PERP", market.info, 0, view.seq, 1, bids, asks)
    books = {}
    for i in range(2000):
        delta = view.apply(market.step().changes)
        if delta is not None:
            truth.record_delta("futures", "BTC-PERP", 0, delta, 1000 + i)
            books[delta.seq] = view.levels()
    last = truth.last_seq("futures", "BTC-PERP")
    for seq in (last, last - 1, last - 150, truth.oldest_seq("futures", "BTC-PERP")):
        book = truth.book("futures", "BTC-PERP", seq=seq)
        b, a = books[seq]
        assert book.bids == tuple((market.info.price_str(p), market.info.size_str(s)) for p, s in b)
        assert book.asks == tuple((market.info.price_str(p), market.info.size_str(s)) for p, s in a)
    with pytest.raises(TruthError, match="outside the kept history"):
        truth.book("futures", "BTC-PERP", seq=last - 5000)
    with pytest.raises(TruthError, match="no book chain"):
        truth.book("spot", "BTC-USD")
