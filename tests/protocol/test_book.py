"""The order-book engine: state machine rules, reading, and property tests against a naive book."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.protocol.book import (
    APPLIED,
    APPLIED_TOP,
    CROSSED,
    DUPLICATE,
    GAP,
    LIVE,
    RESYNCING,
    SKIPPED,
    SYNCING,
    OrderBook,
)

BIDS = [(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)]
ASKS = [(102.0, 3.0), (101.5, 2.0), (101.0, 1.0)]  # worst first, as BTSE sends snapshots


def live_book() -> OrderBook:
    book = OrderBook("spot", "BTC-USD", 0)
    book.apply_snapshot(BIDS, ASKS, seq=10, timestamp_us=1)
    return book


def test_snapshot_goes_live_and_sorts_asks_sent_worst_first() -> None:
    book = live_book()
    assert book.state is LIVE
    assert book.best_bid() == (100.0, 1.0)
    assert book.best_ask() == (101.0, 1.0)
    assert book.top == (100.0, 1.0, 101.0, 1.0)
    assert book.top_asks(2) == [(101.0, 1.0), (101.5, 2.0)]
    assert book.top_bids(5) == BIDS
    assert book.depth() == (BIDS, sorted(ASKS))


def test_deltas_before_a_snapshot_are_counted_not_applied() -> None:
    book = OrderBook("spot", "BTC-USD", 0)
    assert book.state is SYNCING
    assert book.apply_delta([(100.0, 5.0)], [], 3, 2) == SKIPPED
    assert book.apply_delta([(100.0, 5.0)], [], 4, 3) == SKIPPED
    assert len(book) == 0
    assert book.skipped_since_sync == 2
    book.apply_snapshot(BIDS, ASKS, 10)
    assert book.skipped_since_sync == 0 and book.skipped_count == 2


def test_delta_absolute_sizes_zero_deletes_unordered() -> None:
    book = live_book()
    out = book.apply_delta([(99.0, 0.0), (99.75, 4.0), (100.0, 0.5)], [(101.0, 0.0), (103.0, 1.0)], 11, 10)
    assert out == APPLIED_TOP
    assert book.top_bids(10) == [(100.0, 0.5), (99.75, 4.0), (99.5, 2.0)]
    assert book.top_asks(10) == [(101.5, 2.0), (102.0, 3.0), (103.0, 1.0)]
    assert book.top == (100.0, 0.5, 101.5, 2.0)
    assert book.last_seq == 11
    # deep change: top unchanged
    assert book.apply_delta([(98.0, 1.0)], [], 12, 11) == APPLIED
    # deleting a level the book does not hold is harmless
    assert book.apply_delta([(50.0, 0.0)], [], 13, 12) == APPLIED


def test_gap_moves_to_resyncing_with_expected_and_received() -> None:
    book = live_book()
    assert book.apply_delta([(100.0, 2.0)], [], 12, 11) == GAP
    assert book.state is RESYNCING
    assert (book.expected_seq, book.received_seq) == (10, 11)
    assert book.gap_count == 1
    # nothing is applied until the next snapshot
    assert book.apply_delta([(100.0, 9.0)], [], 13, 12) == SKIPPED
    assert book.best_bid() == (100.0, 1.0)
    book.apply_snapshot(BIDS, ASKS, 20)
    assert book.state is LIVE
    assert book.apply_delta([(100.0, 9.0)], [], 21, 20) == APPLIED_TOP


def test_duplicate_is_ignored_and_counted_not_a_gap() -> None:
    book = live_book()
    assert book.apply_delta([(100.0, 2.0)], [], 11, 10) == APPLIED_TOP
    assert book.apply_delta([(100.0, 7.0)], [], 11, 10) == DUPLICATE
    assert book.apply_delta([(100.0, 7.0)], [], 9, 8) == DUPLICATE
    assert book.state is LIVE
    assert book.duplicate_count == 2
    assert (book.expected_seq, book.received_seq) == (11, 9)
    assert book.best_bid() == (100.0, 2.0)


def test_crossed_after_delta_moves_to_resyncing() -> None:
    book = live_book()
    assert book.apply_delta([(101.0, 1.0)], [], 11, 10) == CROSSED  # bid == best ask
    assert book.state is RESYNCING
    assert book.crossed_count == 1
    assert book.is_crossed()


def test_crossed_snapshot_is_kept_but_resyncs() -> None:
    book = OrderBook("futures", "BTC-PERP", 0)
    assert book.apply_snapshot([(122160.1, 69350.0)], [(122133.3, 1000.0)], 5) == CROSSED
    assert book.state is RESYNCING and book.best_bid() == (122160.1, 69350.0)


def test_reset_goes_back_to_syncing_empty() -> None:
    book = live_book()
    book.reset()
    assert book.state is SYNCING
    assert len(book) == 0 and book.top == (None, None, None, None)
    assert book.apply_delta([(1.0, 1.0)], [], 11, 10) == SKIPPED


def test_empty_sides() -> None:
    book = OrderBook("futures", "X-PERP", 0)
    book.apply_snapshot([], [(5.0, 1.0)], 1)
    assert book.best_bid() is None
    assert book.top == (None, None, 5.0, 1.0)
    assert book.top_bids(3) == [] and book.top_asks(0) == []


# -- property tests ------------------------------------------------------------------------

prices = st.integers(min_value=1, max_value=60).map(lambda i: i * 0.5)
amounts = st.sampled_from([0.0, 0.0, 1.0, 2.5, 0.00001, 69350.0])
levels = st.lists(st.tuples(prices, amounts), max_size=8)


class NaiveBook:
    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def apply(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        for side, lv in ((self.bids, bids), (self.asks, asks)):
            for p, a in lv:
                if a:
                    side[p] = a
                else:
                    side.pop(p, None)

    def depth(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


@settings(max_examples=150, deadline=None)
@given(st.tuples(levels, levels), st.lists(st.tuples(levels, levels), max_size=30))
def test_engine_equals_naive_book_on_random_streams(snapshot, deltas) -> None:  # type: ignore[no-untyped-def]
    """Random snapshot + deltas (crossing allowed): while LIVE the engine equals a naive book."""
    book = OrderBook("spot", "T", 0)
    naive = NaiveBook()
    first = book.apply_snapshot(snapshot[0], snapshot[1], 100)
    naive.apply(snapshot[0], snapshot[1])
    assert book.depth() == naive.depth()
    nb, na = naive.depth()
    assert (first == CROSSED) == bool(nb and na and nb[0][0] >= na[0][0])
    seq = 100
    for bids, asks in deltas:
        if book.state is not LIVE:
            break
        out = book.apply_delta(bids, asks, seq + 1, seq)
        seq += 1
        naive.apply(bids, asks)
        assert out in (APPLIED, APPLIED_TOP, CROSSED)
        assert book.depth() == naive.depth()
        nb, na = naive.depth()
        expected_top = (nb[0][0] if nb else None, nb[0][1] if nb else None, na[0][0] if na else None, na[0][1] if na else None)
        if out != CROSSED:
            assert book.top == expected_top
        # the cached best prices (searched again only when the best level is deleted)
        assert (book.best_bid(), book.best_ask()) == (nb[0] if nb else None, na[0] if na else None)
        assert (out == CROSSED) == bool(nb and na and nb[0][0] >= na[0][0])


def _stream(n: int) -> list[tuple[int, int]]:
    return [(s, s - 1) for s in range(101, 101 + n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=3, max_value=40), st.data())
def test_any_single_dropped_duplicated_or_reordered_delta_is_detected(n: int, data) -> None:  # type: ignore[no-untyped-def]
    stream = _stream(n)
    i = data.draw(st.integers(min_value=0, max_value=n - 2), label="position")
    fault = data.draw(st.sampled_from(["drop", "duplicate", "reorder"]), label="fault")
    if fault == "drop":
        faulty = stream[:i] + stream[i + 1 :]
        expected = GAP
    elif fault == "duplicate":
        faulty = [*stream[:i + 1], stream[i], *stream[i + 1:]]
        expected = DUPLICATE
    else:
        faulty = [*stream[:i], stream[i + 1], stream[i], *stream[i + 2:]]
        expected = GAP
    book = OrderBook("spot", "T", 0)
    book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 100)
    outcomes = [book.apply_delta([], [], s, p) for s, p in faulty]
    problems = [o for o in outcomes if o not in (APPLIED, APPLIED_TOP)]
    assert problems, f"{fault} at {i} not detected"
    assert problems[0] == expected
    if expected == GAP:
        assert book.state is RESYNCING
    else:
        assert book.state is LIVE and book.duplicate_count == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=99, max_value=110), st.integers(min_value=98, max_value=110)), max_size=25))
def test_clean_chain_is_never_flagged(extra) -> None:  # type: ignore[no-untyped-def]
    book = OrderBook("spot", "T", 0)
    book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 100)
    for s, p in _stream(30):
        assert book.apply_delta([], [], s, p) in (APPLIED, APPLIED_TOP)
    assert book.state is LIVE and book.gap_count == 0 and book.duplicate_count == 0
