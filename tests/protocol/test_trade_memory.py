"""TradeMemory: which trades are already stored, by id among the recent ones and by exchange
time beyond them (BTSE's tradeId is not monotonic: reference §3.3.1, §3.5)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.protocol import Normalizer
from collector.protocol.normalizer import TradeMemory
from collector.specs import SpecRegistry

MS = 1000  # µs


def test_recent_ids_then_the_time_floor_after_eviction() -> None:
    m = TradeMemory(capacity=2)
    assert [m.seen(i, t * MS) for i, t in (("30", 1), ("20", 2), ("10", 3))] == [False] * 3
    # "30" left the recent set: the floor is its time and id
    assert (m.floor_us, m.floor_ids, m.recent) == (1 * MS, {"30"}, {"20", "10"})
    assert m.seen("30", 1 * MS) and m.seen("20", 2 * MS) and m.seen("10", 3 * MS)
    assert m.seen("31", 0)  # older than a trade evicted: taken for a re-sent one
    assert not m.seen("31", 1 * MS)  # same millisecond as the floor, another id: a new trade
    assert (m.floor_us, m.floor_ids) == (2 * MS, {"20"})
    assert m.newest_us == 3 * MS


def test_several_trades_in_one_millisecond_at_the_floor() -> None:
    m = TradeMemory(capacity=1)
    for i in ("a", "b", "c"):
        assert not m.seen(i, 5 * MS)
    assert (m.floor_us, m.floor_ids, m.recent) == (5 * MS, {"a", "b"}, {"c"})
    assert m.seen("a", 5 * MS) and m.seen("b", 5 * MS) and m.seen("c", 5 * MS)
    assert not m.seen("d", 5 * MS)


def test_a_late_trade_inside_the_recent_window_is_kept() -> None:
    m = TradeMemory(capacity=100)
    assert not m.seen("100", 10 * MS)
    assert not m.seen("99", 9 * MS)  # arrives after a newer one: a different id, kept
    assert m.newest_us == 10 * MS and m.floor_us is None


def test_stored_seeds_and_only_moves_the_floor_up() -> None:
    m = TradeMemory()
    m.stored(10 * MS, ["x", "y"])
    m.stored(9 * MS, ["old"])  # older: nothing changes
    assert (m.floor_us, m.floor_ids, m.newest_us) == (10 * MS, {"x", "y"}, 10 * MS)
    m.stored(10 * MS, ["z"])
    assert m.floor_ids == {"x", "y", "z"}
    assert [m.seen(i, 10 * MS) for i in ("x", "y", "z", "w")] == [True, True, True, False]
    assert m.seen("old", 9 * MS) and not m.seen("1", 11 * MS)
    m.stored(12 * MS, ["q"])
    assert (m.floor_us, m.floor_ids, m.newest_us) == (12 * MS, {"q"}, 12 * MS)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        TradeMemory(0)


# Property: BTSE's trade tape (times never go back, several trades per millisecond, ids in any
# order, lower ones included) delivered through the Normalizer in frames, with batches re-sent
# newest first after resubscribes (holding trades made meanwhile too) and restarts seeded from
# the store's newest trade as the daemon does: every trade is stored exactly once.
tape_st = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10**9)), min_size=1, max_size=60
)  # (ms since the previous trade, tradeId)
ops_st = st.lists(
    st.tuples(
        st.sampled_from(["trade", "trade", "trade", "resend", "restart"]), st.integers(1, 12)
    ),
    max_size=80,
)
T0 = 1_790_000_000_000_000


def frame(trades: list[tuple[int, int]]) -> str:
    data = [
        {
            "price": 1.5,
            "size": 1,
            "side": "BUY",
            "symbol": "BTC-PERP",
            "tradeId": i,
            "timestamp": ms,
        }
        for i, ms in trades
    ]
    return json.dumps({"topic": "tradeHistoryApiV3:BTC-PERP", "data": data})


@settings(max_examples=200, deadline=None)
@given(tape_st, ops_st, st.integers(1, 6))
def test_every_trade_stored_once_across_resends_and_restarts(
    registry: SpecRegistry, steps: list[tuple[int, int]], ops: list[tuple[str, int]], capacity: int
) -> None:
    tape: list[tuple[int, int]] = []
    ms, ids = 1_790_134_428_345, set()
    for gap, i in steps:
        ms += gap
        if i not in ids:  # a trade id names one trade
            ids.add(i)
            tape.append((i, ms))
    stored: list[tuple[str, int]] = []

    def restart() -> Normalizer:
        norm = Normalizer(registry, validate_sample_rate=0, trade_memory=capacity)
        if stored:  # what Store.newest_trades() gives the daemon
            newest = max(t for _, t in stored)
            norm.seed_stored_trades(
                "futures", "BTC-PERP", newest, [i for i, t in stored if t == newest]
            )
        return norm

    norm = restart()

    def deliver(trades: list[tuple[int, int]]) -> None:
        if trades:
            norm.feed("f", "futures", frame(trades), T0)
            got = norm.buffers.take("trades")
            stored.extend(zip(got["id"], got["timestamp"], strict=True))

    sent = 0
    for op, n in ops:
        if op == "trade":
            deliver(tape[sent : sent + n])
            sent = min(sent + n, len(tape))
        elif op == "resend":  # the last n trades, newest first: n // 2 of them are new
            end = min(sent + n // 2, len(tape))
            deliver(tape[max(0, end - n) : end][::-1])
            sent = end
        else:
            norm = restart()
    deliver(tape[sent:])
    assert sorted(stored) == sorted((str(i), t * MS) for i, t in tape)
