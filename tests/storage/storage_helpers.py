"""Helpers for storage tests: hand-made column batches and a controllable clock.

Imported as ``storage_helpers`` (pytest puts tests/storage on sys.path; unique name on purpose)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DAY_US = 86_400_000_000
T0_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
T0_S = T0_US / 1_000_000


class Clock:
    def __init__(self, now: float = T0_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def trades(ids: Sequence[int], symbol: str = "BTC-USD", product: str = "spot",
           ts: Sequence[int] | None = None) -> dict[str, list[Any]]:
    n = len(ids)
    local = list(ts) if ts is not None else [T0_US + i for i in ids]
    return {
        "exchange": ["btse"] * n, "product": [product] * n, "symbol": [symbol] * n,
        "timestamp": [t - 5 for t in local], "local_timestamp": local,
        "id": [str(i) for i in ids], "side": ["buy" if i % 2 else "sell" for i in ids],
        "price": [100.0 + i / 100 for i in ids], "amount": [0.5] * n,
    }


def book(rows: Sequence[tuple[int, bool, str, float, float, int]], symbol: str = "BTC-USD",
         product: str = "spot", grouping: int = 0) -> dict[str, list[Any]]:
    """rows: (local_timestamp_us, is_snapshot, side, price, amount, seq)."""
    n = len(rows)
    return {
        "exchange": ["btse"] * n, "product": [product] * n, "symbol": [symbol] * n,
        "grouping": [grouping] * n, "timestamp": [r[0] for r in rows],
        "local_timestamp": [r[0] for r in rows], "is_snapshot": [r[1] for r in rows],
        "side": [r[2] for r in rows], "price": [r[3] for r in rows], "amount": [r[4] for r in rows],
        "seq": [r[5] for r in rows], "prev_seq": [r[5] - 1 for r in rows],
    }


def quotes(rows: Sequence[tuple[int, float, float, float, float]], symbol: str = "BTC-USD",
           product: str = "spot", source: str = "book") -> dict[str, list[Any]]:
    """rows: (local_timestamp_us, bid_price, bid_amount, ask_price, ask_amount)."""
    n = len(rows)
    return {
        "exchange": ["btse"] * n, "product": [product] * n, "symbol": [symbol] * n,
        "timestamp": [None] * n, "local_timestamp": [r[0] for r in rows],
        "ask_amount": [r[4] for r in rows], "ask_price": [r[3] for r in rows],
        "bid_price": [r[1] for r in rows], "bid_amount": [r[2] for r in rows],
        "source": [source] * n, "grouping": [0] * n, "seq": [i for i in range(n)],
    }


def events(rows: Sequence[tuple[int, str, str | None, str | None, str | None]]) -> dict[str, list[Any]]:
    """rows: (local_timestamp_us, kind, symbol, connection, detail) — product spot when symbol."""
    n = len(rows)
    return {
        "exchange": ["btse"] * n, "kind": [r[1] for r in rows],
        "product": ["spot" if r[2] else None for r in rows], "symbol": [r[2] for r in rows],
        "topic": [None] * n, "connection": [r[3] for r in rows], "expected_seq": [None] * n,
        "received_seq": [None] * n, "count": [None] * n, "detail": [r[4] for r in rows],
        "timestamp": [None] * n, "local_timestamp": [r[0] for r in rows],
    }
