"""The C speedups against their pure-Python twins: same books, outcomes, rows and hand-over.

Every piece of ``collector/protocol/_speedups.c`` has a Python twin; these tests feed both the
same input and compare everything observable. ``test_pure_python_suite`` runs the whole
protocol suite again with ``BTSE_COLLECTOR_PURE_PYTHON=1`` so the fallback keeps working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.errors import SpeedupsUnavailable
from collector.protocol import native
from collector.protocol.book import (
    APPLIED,
    APPLIED_TOP,
    CROSSED,
    DUPLICATE,
    GAP,
    RESYNCING,
    SKIPPED,
    OrderBook,
    PyOrderBook,
    book_class,
)
from collector.protocol.normalizer import Normalizer, py_apply_delta_rows
from collector.protocol.numbers import py_has_long_digit_run
from collector.protocol.rows import (
    PyBookChanges,
    new_book_changes,
    py_columns_of,
    take_book_changes,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    native.speedups is None and os.environ.get(native.ENV_PURE_PYTHON, "") not in ("", "0"),
    reason=f"C speedups disabled by {native.ENV_PURE_PYTHON}",
)

S: Any = native.speedups


class _Registry:
    def server(self, name: str) -> Any:
        raise AssertionError("not used")

    def match(self, product: str, topic: str) -> None:
        return None

    def validate(self, channel: Any, payload: Any) -> None:
        return None


def test_speedups_are_built_and_used_by_default() -> None:
    # `make test` builds them (setup.py); a silent build failure must not pass unnoticed
    assert S is not None, "collector.protocol._speedups is not built: pip install -e ."
    assert native.implementation() == "c"
    assert OrderBook is book_class(True) and OrderBook is not PyOrderBook
    assert isinstance(OrderBook("spot", "BTC-USD"), S.BookCore)
    assert Normalizer(_Registry()).speedups is True
    assert type(new_book_changes()) is S.BookChanges


# -- books: random streams through both cores -----------------------------------------------

PRICES = st.sampled_from([99.0, 99.5, 100.0, 100.5, 101.0, 101.5, 102.0, 1e-8, 65000.25])
AMOUNTS = st.sampled_from([0.0, 0.0, 1.0, 2.5, 0.00012, 3.0])
LEVELS = st.lists(st.tuples(PRICES, AMOUNTS), max_size=8)


def _observe(book: Any) -> tuple[Any, ...]:
    return (
        book.state,
        dict(book.bids),
        dict(book.asks),
        book.top,
        book.best_bid(),
        book.best_ask(),
        book.last_seq,
        book.timestamp_us,
        book.expected_seq,
        book.received_seq,
        book.skipped_count,
        book.skipped_since_sync,
        book.duplicate_count,
        book.gap_count,
        book.crossed_count,
        book.sync_count,
        book.depth(),
    )


STEP = st.one_of(
    st.tuples(st.just("snapshot"), LEVELS, LEVELS, st.integers(0, 40)),
    st.tuples(st.just("delta"), LEVELS, LEVELS, st.integers(0, 40), st.integers(-2, 2)),
    st.tuples(st.just("reset")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_c_core_equals_python_core_on_random_streams(steps: list[tuple[Any, ...]]) -> None:
    c_book, py_book = book_class(True)("spot", "X-Y"), PyOrderBook("spot", "X-Y")
    for step in steps:
        outcomes = []
        for book in (c_book, py_book):
            if step[0] == "snapshot":
                outcomes.append(book.apply_snapshot(step[1], step[2], step[3], timestamp_us=7))
            elif step[0] == "reset":
                book.reset()
            else:
                _, bids, asks, _seq, skew = step
                prev = book.last_seq + skew  # mostly in sequence, sometimes a gap/duplicate
                outcomes.append(book.apply_delta(bids, asks, book.last_seq + 1 + skew, prev, 9))
        assert len(set(outcomes)) <= 1, (step, outcomes)
        assert _observe(c_book) == _observe(py_book), step


def test_c_core_outcomes_by_name() -> None:
    book = book_class(True)("spot", "BTC-USD")
    assert book.apply_delta([(1.0, 1.0)], [], 2, 1) == SKIPPED
    book.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 10)
    assert book.apply_delta([(99.0, 1.0)], [], 11, 10) == APPLIED
    assert book.apply_delta([(100.5, 1.0)], [], 12, 11) == APPLIED_TOP
    assert book.apply_delta([(100.5, 9.0)], [], 12, 11) == DUPLICATE
    assert (book.expected_seq, book.received_seq) == (12, 12)
    assert book.apply_delta([(102.0, 1.0)], [], 13, 12) == CROSSED
    assert book.state is RESYNCING and book.received_seq == 13 and book.expected_seq is None
    book.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 20)
    assert book.apply_delta([], [], 23, 22) == GAP
    assert (book.expected_seq, book.received_seq, book.gap_count) == (20, 22, 1)


def test_c_core_leaves_the_book_untouched_on_a_bad_level() -> None:
    book = book_class(True)("spot", "BTC-USD")
    book.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 10)
    before = _observe(book)
    for bids, message in (
        ([(99.0, 1.0), ("99.5", 1.0)], "price must be a float or int"),
        ([(99.0, 1.0), (99.5, None)], "amount must be a float or int"),
        ([(99.0, 1.0), (99.5,)], r"not a \(price, amount\) pair"),
        ([(99.0, 1.0), (99.5, True)], "amount must be a float or int"),
    ):
        with pytest.raises(TypeError, match=message):
            book.apply_delta(bids, [], 11, 10)
        assert _observe(book) == before
    with pytest.raises(TypeError, match="seq must be an int"):
        book.apply_delta([], [], "11", 10)
    assert book.apply_delta([(99.0, 1.0)], [], 11, 10) == APPLIED  # still in sequence


def test_c_core_accepts_ints_and_lists_like_python() -> None:
    c_book, py_book = book_class(True)("spot", "X"), PyOrderBook("spot", "X")
    for book in (c_book, py_book):
        book.apply_snapshot([[100, 1]], [[101, 2]], 1)
        assert book.apply_delta([[100, 0], [99, 3]], [[101, 5]], 2, 1) == APPLIED_TOP
    assert _observe(c_book) == _observe(py_book)
    assert c_book.top == (99.0, 3, 101.0, 5)


# -- rows: apply_delta_rows and BookChanges ---------------------------------------------------


def _columns(batch: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: (v if isinstance(v, list) else v.to_pylist()) for k, v in batch.items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(LEVELS, LEVELS, st.integers(-1, 1)), max_size=30))
def test_apply_delta_rows_c_equals_python(deltas: list[tuple[Any, Any, int]]) -> None:
    results = []
    for speedups in (True, False):
        book = book_class(speedups)("spot", "BTC-USD", 0)
        book.apply_snapshot([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)], 100)
        rows = new_book_changes(speedups)
        quotes: list[tuple[Any, ...]] = []
        apply = S.apply_delta_rows if speedups else py_apply_delta_rows
        outcomes = []
        for i, (bids, asks, skew) in enumerate(deltas):
            seq = book.last_seq + 1 + skew
            outcomes.append(apply(book, bids, asks, seq, seq - 1, 1000 * i, 5 + i, rows, quotes))
        results.append((outcomes, _columns(take_book_changes(rows)), quotes, _observe(book)))
    assert results[0] == results[1]


def test_book_changes_c_equals_python_with_null_timestamps_and_many_books() -> None:
    batches = []
    for speedups in (True, False):
        rows = new_book_changes(speedups)
        rows.append(("spot", "BTC-USD", 0), 1_000, 5, True, 10, 9, [(1.5, 2.0)], [(2.5, 1.0)])
        rows.append(("futures", "BTC-PERP", 2), None, 6, False, 11, 10, [], [(2.75, 0.0)])
        rows.append(("spot", "BTC-USD", 0), 2_000, 7, False, 12, 11, [(1.25, 3.0)], [])
        rows.append(("spot", "ETH-USD", 0), 3_000, 8, False, 1, 0, [], [])  # no rows
        assert len(rows) == 4
        batch = take_book_changes(rows)
        assert len(rows) == 0
        batches.append(batch)
    c, py = batches
    assert list(c) == list(py)
    for name in c:
        assert c[name].type == py[name].type, name
        assert c[name].to_pylist() == py[name].to_pylist(), name
    assert c["timestamp"].to_pylist() == [1_000, 1_000, None, 2_000]
    assert c["side"].to_pylist() == ["bid", "ask", "ask", "bid"]
    assert c["is_snapshot"].to_pylist() == [True, True, False, False]
    assert c["symbol"].to_pylist() == ["BTC-USD", "BTC-USD", "BTC-PERP", "BTC-USD"]
    assert c["grouping"].to_pylist() == [0, 0, 2, 0]
    for rows in (new_book_changes(True), PyBookChanges()):  # empty batches have the types too
        empty = take_book_changes(rows)
        assert {k: (v.type, len(v)) for k, v in empty.items()} == {
            k: (v.type, 0) for k, v in c.items()
        }


def test_book_changes_batches_do_not_leak_book_indexes() -> None:
    rows = new_book_changes(True)
    book = book_class(True)("spot", "A-B")
    book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 1)
    other = ("spot", "C-D", 0)
    quotes: list[tuple[Any, ...]] = []
    rows.append(other, 1, 1, False, 1, 0, [(5.0, 1.0)], [])
    S.apply_delta_rows(book, [(1.5, 1.0)], [], 2, 1, 10, 10, rows, quotes)
    first = _columns(take_book_changes(rows))
    assert first["symbol"] == ["C-D", "A-B"]
    S.apply_delta_rows(book, [(1.25, 1.0)], [], 3, 2, 11, 11, rows, quotes)  # new batch: index 0
    second = _columns(take_book_changes(rows))
    assert second["symbol"] == ["A-B"] and second["price"] == [1.25]
    assert [q[:2] for q in quotes] == [("spot", "A-B")]  # only the first one moved the top


def test_book_changes_rejects_bad_input_with_a_clear_error() -> None:
    rows = new_book_changes(True)
    with pytest.raises(TypeError, match=r"\(product, symbol, grouping\)"):
        rows.append("BTC-USD", 1, 1, False, 1, 0, [(1.0, 1.0)], [])
    with pytest.raises(TypeError, match="timestamp must be an int"):
        rows.append(("spot", "A", 0), 1.5, 1, False, 1, 0, [(1.0, 1.0)], [])
    with pytest.raises(TypeError, match=r"not a \(price, amount\) pair"):
        rows.append(("spot", "A", 0), 1, 1, False, 1, 0, [1.0], [])
    assert len(rows) == 0
    with pytest.raises(TypeError, match="apply_delta_rows needs"):
        S.apply_delta_rows(PyOrderBook("spot", "A"), [], [], 1, 0, 1, 1, rows, [])


# -- the scan and the transpose ---------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80) | st.text(alphabet="0123456789.,\"a ]", max_size=80).map(str.encode))
def test_digit_run_scan_c_equals_python(raw: bytes) -> None:
    assert S.has_long_digit_run(raw) == py_has_long_digit_run(raw)
    assert S.has_long_digit_run(bytearray(raw)) == py_has_long_digit_run(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"1" * 15, False),
        (b"1" * 16, True),
        (b"x" + b"1" * 16, True),
        (b"1" * 15 + b"x" + b"1" * 15, False),
        (b'"0.000000000012345"', True),
        (b'{"timestamp":1790133628076,"seqNum":1234567}', False),
    ],
)
def test_digit_run_scan_edges(raw: bytes, expected: bool) -> None:
    assert S.has_long_digit_run(raw) is expected
    assert py_has_long_digit_run(raw) is expected


def test_columns_of_c_equals_python() -> None:
    rows = [(1, "a", None, 2.5), (2, "b", 3, None)]
    assert S.columns_of(rows, 4) == py_columns_of(rows, 4) == [[1, 2], ["a", "b"], [None, 3], [2.5, None]]
    assert S.columns_of([], 3) == [[], [], []]
    with pytest.raises(ValueError, match="row 1 is not a tuple of 4 values"):
        S.columns_of([(1, 2, 3, 4), (1, 2, 3)], 4)


# -- the whole normalizer, both ways ----------------------------------------------------------


def test_normalizer_c_equals_python_on_a_stream_with_gaps_duplicates_and_crossing(
    registry: Any,
) -> None:
    def frame(seq: int, kind: str, bids: Any, asks: Any, prev: int | None = None) -> str:
        import json

        data = {
            "bids": [[str(p), str(a)] for p, a in bids],
            "asks": [[str(p), str(a)] for p, a in asks],
            "seqNum": seq,
            "prevSeqNum": seq - 1 if prev is None else prev,
            "type": kind,
            "symbol": "BTC-USD",
            "timestamp": 1_790_000_000_000 + seq,
        }
        return json.dumps({"topic": "update:BTC-USD_0", "data": data})

    frames = [
        frame(10, "delta", [(99, 1)], []),  # before any snapshot: skipped
        frame(11, "snapshot", [(100, 1), (99, 2)], [(102, 1), (101, 1)]),
        frame(12, "delta", [(100.5, 1)], []),
        frame(12, "delta", [(100.5, 7)], []),  # duplicate
        frame(13, "delta", [(100, 0)], [(101, 3)]),
        frame(15, "delta", [(98, 1)], [], prev=14),  # gap
        frame(20, "snapshot", [(100, 1)], [(101, 1)]),
        frame(21, "delta", [(101.5, 1)], []),  # crossed
        frame(30, "snapshot", [(100, 1)], [(101, 1)]),
        frame(31, "delta", [(100, 0)], [(101, 0)]),  # both sides empty
        frame(32, "delta", [(90, 1)], [(110, 1)]),
    ]
    outputs = []
    for speedups in (True, False):
        norm = Normalizer(registry, snapshot_interval_s=1.0, speedups=speedups)
        commands = norm.feed_many(("c#1", "spot_oss", f, 1_000 + i) for i, f in enumerate(frames))
        tables = {t: _columns(cols) for t, cols in norm.buffers.take_all().items()}
        outputs.append((commands, tables, norm.stats))
    assert outputs[0] == outputs[1]
    assert outputs[0][2].gaps == outputs[0][2].crossed == outputs[0][2].duplicates == 1


def test_requiring_speedups_when_disabled_is_a_typed_error() -> None:
    code = (
        "from collector.protocol import native\n"
        "from collector.errors import SpeedupsUnavailable\n"
        "assert native.speedups is None and native.implementation() == 'python'\n"
        "try:\n    native.use_speedups(True)\nexcept SpeedupsUnavailable as e:\n    print(e)\n"
    )
    env = {**os.environ, native.ENV_PURE_PYTHON: "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert f"disabled by {native.ENV_PURE_PYTHON}" in out.stdout
    assert issubclass(SpeedupsUnavailable, Exception)


@pytest.mark.slow
def test_pure_python_suite() -> None:
    """The protocol tests pass on the pure-Python twins too (the fallback without a compiler)."""
    env = {**os.environ, native.ENV_PURE_PYTHON: "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/protocol"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_c_paths_keep_no_stray_references() -> None:
    """A 24/7 daemon calls these millions of times: no reference may leak on any path."""
    book = book_class(True)("spot", "BTC-USD", 0)
    book.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 1)
    rows = new_book_changes(True)
    quotes: list[tuple[Any, ...]] = []
    level = (100.5, 2.5)
    bad = (100.25, "x")
    bids, asks = [level], [(102.0, 0.0)]
    seq = 1
    price, amount = level
    before = [sys.getrefcount(o) for o in (level, bids, bad, price, amount)]
    for _ in range(500):
        seq += 1
        S.apply_delta_rows(book, bids, asks, seq, seq - 1, 7, 8, rows, quotes)  # applied
        S.apply_delta_rows(book, bids, asks, seq, seq - 1, 7, 8, rows, quotes)  # duplicate
        with pytest.raises(TypeError):
            S.apply_delta_rows(book, [level, bad], asks, seq + 1, seq, 7, 8, rows, quotes)
        rows.append(book.key, None, 9, True, seq, seq - 1, bids, asks)
        take_book_changes(rows)
    quotes.clear()
    book.reset()
    after = [sys.getrefcount(o) for o in (level, bids, bad, price, amount)]
    assert after == before


class _Float(float):
    def __hash__(self) -> int:
        return 0


JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=3)
    | st.builds(_Float, st.floats(allow_nan=False)),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(JUNK, JUNK, JUNK)
def test_c_paths_survive_junk_input_with_typed_errors(bids: Any, asks: Any, ts: Any) -> None:
    """Anything a Python caller may pass gives a result or a typed error, never a crash; a
    call that fails leaves the book and the batch exactly as they were."""
    book = book_class(True)("spot", "BTC-USD", 0)
    book.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 1)
    rows = new_book_changes(True)
    quotes: list[tuple[Any, ...]] = []
    for call in (
        lambda: book.apply_delta(bids, asks, 2, 1, ts),
        lambda: S.apply_delta_rows(book, bids, asks, 3, book.last_seq, ts, 5, rows, quotes),
        lambda: rows.append(book.key, ts, 5, bids, 2, 1, bids, asks),
    ):
        before = (_observe(book), len(rows), len(quotes))
        try:
            call()
        except (TypeError, ValueError, OverflowError):
            assert (_observe(book), len(rows), len(quotes)) == before
    batch = _columns(take_book_changes(rows))
    assert len(batch["price"]) == len(batch["side"]) == len(batch["timestamp"])
    assert len(rows) == 0


def test_c_paths_reject_a_broken_book_instead_of_crashing() -> None:
    book = book_class(True)("spot", "BTC-USD", 0)
    book.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 1)
    rows = new_book_changes(True)
    del book.key
    with pytest.raises(TypeError, match=r"book\.key must be"):
        S.apply_delta_rows(book, [(100.5, 1.0)], [], 2, 1, 1, 1, rows, [])
    book.key = ("spot", "BTC-USD", 0)
    del book._top
    assert S.apply_delta_rows(book, [(100.5, 1.0)], [], 2, 1, 1, 1, rows, []) == APPLIED_TOP
    before = _observe(book)
    with pytest.raises(TypeError, match=r"OrderBook\.bids must be a dict"):
        book.bids = None  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"OrderBook\.asks cannot be deleted"):
        del book.asks
    with pytest.raises(TypeError, match="amount must be a float or int"):
        book.bids = {1.0: "2"}  # type: ignore[dict-item]
    assert _observe(book) == before
    book._best_bid = 7.0  # a cached best that is not a level: the twin's KeyError, named
    with pytest.raises(KeyError, match=r"best bid 7\.0 is not a level"):
        book.top_changed()


# -- regressions: key cache, rows checked before the book changes, re-entrancy, batch limit --


def test_apply_delta_rows_follows_a_replaced_book_key() -> None:
    """The book's index in the batch is cached per key object: a new key is looked up again
    (it was cached per batch only, and the rows went on naming the old book)."""
    results = []
    for speedups in (True, False):
        book = book_class(speedups)("spot", "A-B")
        book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 1)
        rows = new_book_changes(speedups)
        quotes: list[tuple[Any, ...]] = []
        apply = S.apply_delta_rows if speedups else py_apply_delta_rows
        apply(book, [(1.5, 1.0)], [], 2, 1, 10, 10, rows, quotes)
        book.key = ("spot", "X-Y", 3)
        apply(book, [(1.25, 1.0)], [], 3, 2, 11, 11, rows, quotes)
        book.key = ("spot", "A-B", 0)  # an equal key again, another object
        apply(book, [(1.75, 1.0)], [], 4, 3, 12, 12, rows, quotes)
        results.append((_columns(take_book_changes(rows)), quotes))
    assert results[0] == results[1]
    assert results[0][0]["symbol"] == ["A-B", "X-Y", "A-B"]
    assert results[0][0]["grouping"] == [0, 3, 0]


@pytest.mark.parametrize("timestamp", [2**63, -(2**63) - 1, 1.5, "1"])
def test_apply_delta_rows_checks_the_row_before_the_book_changes(timestamp: Any) -> None:
    """A timestamp the row cannot hold is an error before the delta is applied (it was applied,
    then the rows failed: a delta in the book but not in book_changes)."""
    book = book_class(True)("spot", "A-B")
    book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 1)
    rows = new_book_changes(True)
    before = _observe(book)
    with pytest.raises((OverflowError, TypeError)):
        S.apply_delta_rows(book, [(1.5, 1.0)], [], 2, 1, timestamp, 10, rows, [])
    assert _observe(book) == before and len(rows) == 0
    assert S.apply_delta_rows(book, [(1.5, 1.0)], [], 2, 1, 10, 10, rows, []) == APPLIED_TOP
    assert len(rows) == 1
    book.key = ("spot", ["A-B"], 0)  # type: ignore[assignment]  # not hashable: no index
    before = _observe(book)
    with pytest.raises(TypeError, match="unhashable"):
        S.apply_delta_rows(book, [(1.25, 1.0)], [], 3, 2, 11, 11, rows, [])
    assert _observe(book) == before and len(rows) == 1


def test_c_core_sides_are_hash_tables_of_numbers_read_as_dict_copies() -> None:
    """The C core keeps each side as doubles (no Python object, so no Python code runs while a
    delta is applied); ``bids``/``asks`` read as new dicts and are replaced by assignment."""
    book = book_class(True)("spot", "A-B")
    book.apply_snapshot([(1.0, 1.0), (0.5, 2.0)], [(2.0, 1.0)], 1)
    copy = book.bids
    copy[0.75] = 9.0  # a copy: the book does not change
    assert book.bids == {1.0: 1.0, 0.5: 2.0} and book.bids is not book.bids
    book.bids = {1.0: 1.0, 0.25: 0.0, -0.0: 3.0}  # zero amounts are not levels
    assert book.bids == {1.0: 1.0, 0.0: 3.0} and book.side_sizes() == (2, 1)
    assert book.apply_delta([(0.0, 0.0)], [], 2, 1) == APPLIED  # -0.0 and 0.0: one price
    assert book.bids == {1.0: 1.0}
    with pytest.raises(ValueError, match="price is NaN"):
        book.apply_delta([(float("nan"), 1.0)], [], 3, 2)
    with pytest.raises(ValueError, match="price is NaN"):
        book.bids = {float("nan"): 1.0}
    assert book.bids == {1.0: 1.0} and book.last_seq == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-300, 300), st.sampled_from([0.0, 0.0, 1.0, 2.5])), max_size=400))
def test_c_side_table_equals_a_dict_through_growth_and_deletion(ops: list[tuple[int, float]]) -> None:
    """Many levels set and deleted at colliding prices: the C table (linear probing, deletion
    by backward shift, growth) always holds what a dict would."""
    book = book_class(True)("spot", "A-B")
    book.apply_snapshot([], [], 1)
    reference: dict[float, float] = {}
    seq = 1
    for price, amount in ops:
        p = price / 4
        seq += 1
        book.apply_delta([(p, amount)], [], seq, seq - 1)
        if amount:
            reference[p] = amount
        else:
            reference.pop(p, None)
        assert book.side_sizes() == (len(reference), 0)
    assert book.bids == reference
    assert book.best_bid() == ((max(reference), reference[max(reference)]) if reference else None)


def _collect_inside_the_next_allocations(finalizer: Any, threshold: int) -> None:
    """Leave one garbage cycle with a finalizer and a GC threshold that collects it at one of
    the next allocations of GC objects (Python 3.11: inside C code that allocates a tuple)."""
    import gc

    class Cycle:
        def __del__(self) -> None:
            finalizer()

    gc.collect()
    cycle = Cycle()
    cycle.me = cycle  # type: ignore[attr-defined]
    del cycle
    gc.set_threshold(threshold)


def test_c_paths_survive_a_garbage_collection_inside_an_allocation() -> None:
    """The allocations of quote_row and columns_of can run a finalizer (the garbage collector):
    they read the book's key and top, and the rows, before it (a use after free)."""
    import gc

    threshold = gc.get_threshold()
    try:
        for t in range(1, 16):
            book = book_class(True)("spot", "A-B")
            book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 1)
            quotes: list[tuple[Any, ...]] = []

            def replace_top(book: Any = book) -> None:
                book._top = (1.0, 2.0, 3.0, 4.0)
                book.key = ("x", "y", 1)

            _collect_inside_the_next_allocations(replace_top, t)
            S.apply_delta_rows(book, [(1.5, 7.0)], [], 2, 1, 5, 6, new_book_changes(True), quotes)
            gc.set_threshold(*threshold)
            (bid, bid_amount, ask, ask_amount), key = book.top, book.key
            assert quotes == [(*key[:2], 5, 6, ask_amount, ask, bid, bid_amount, "book", key[2], 2)]

            rows = [(float(i), str(i) * 3) for i in range(3)]
            expected = py_columns_of(rows, 2)
            _collect_inside_the_next_allocations(rows.clear, t)
            try:
                columns = S.columns_of(rows, 2)
            except RuntimeError as exc:
                assert "changed during the call" in str(exc)
            else:  # collected before or after the call
                gc.set_threshold(*threshold)
                assert columns in (expected, [[], []])
            gc.set_threshold(*threshold)
    finally:
        gc.set_threshold(*threshold)


def test_book_changes_refuses_rows_past_its_int32_offsets(tmp_path: Path) -> None:
    """Past BOOK_CHANGES_MAX_ROWS (INT32_MAX / 3: the side column's int32 offsets) append()
    is an OverflowError and the batch stays valid (the offsets wrapped: a corrupt Arrow array).
    Built here with a limit of 10 rows."""
    import shutil
    import sysconfig

    cc = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0])
    if cc is None:
        pytest.skip("no C compiler")
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    out = tmp_path / f"_speedups{ext}"
    subprocess.run(
        [
            cc,
            *("-shared", "-fPIC", "-O1", "-DBOOK_CHANGES_MAX_ROWS=10"),
            f"-I{sysconfig.get_paths()['include']}",
            str(ROOT / "collector/protocol/_speedups.c"),
            *("-o", str(out)),
        ],
        check=True,
    )
    code = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("_speedups", {str(out)!r})
S = importlib.util.module_from_spec(spec)
spec.loader.exec_module(S)
from collector.protocol.rows import take_book_changes
rows = S.BookChanges()
key = ("spot", "A-B", 0)
rows.append(key, 1, 1, False, 1, 0, [(1.0, 1.0)] * 6, [])
for more in ([(1.0, 1.0)] * 5, [(2.0, 1.0)] * 4):
    try:
        rows.append(key, 1, 1, False, 2, 1, [], more)
    except OverflowError as exc:
        assert "at most 10 rows" in str(exc), exc
        assert len(rows) == 6
    else:
        assert len(rows) == 10
book = S.BookCore()
book.key, book._state, book.last_seq = key, 1, 1
try:
    S.apply_delta_rows(book, [(1.5, 1.0)], [], 2, 1, 1, 1, rows, [])
except OverflowError:
    assert book.last_seq == 1 and book.bids == {{}}  # refused before the book changed
else:
    raise AssertionError("no OverflowError")
side = take_book_changes(rows)["side"]
side.validate(full=True)
assert side.to_pylist() == ["bid"] * 6 + ["ask"] * 4
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
