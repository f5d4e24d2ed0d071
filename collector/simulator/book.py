"""The book a subscriber of one ``update:<symbol>_<grouping>`` topic holds (pure).

BTSE keeps every topic at a window of 50 levels a side: a level that leaves the window is
sent as size ``"0"``, a level that enters it is sent with its size (reference §3.6). Each
grouping aggregates raw price levels into buckets and is its own sequence chain.

Grouping buckets are ``tick * GROUPING_MULTIPLIERS[g]`` (inferred: BTSE does not document the
bucket sizes); bids are floored to their bucket, asks ceiled, so a grouped book is never
crossed when the raw book is not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from collector.simulator.market import ASK, BID, Market, Side

WINDOW = 50
GROUPING_MULTIPLIERS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
MAX_GROUPING = len(GROUPING_MULTIPLIERS) - 1

Levels = tuple[tuple[int, int], ...]  # (price_ticks, size_lots)


@dataclass(frozen=True, slots=True)
class Delta:
    """One step of a topic's chain: absolute sizes, 0 deletes (unordered, as on the wire)."""

    seq: int
    bids: Levels
    asks: Levels


class BookView:
    """The windowed (and for ``grouping > 0`` aggregated) book of one topic chain."""

    def __init__(self, market: Market, grouping: int, seed: int, depth: int = WINDOW) -> None:
        if not 0 <= grouping <= MAX_GROUPING:
            raise ValueError(f"grouping {grouping} outside 0..{MAX_GROUPING}")
        self.market = market
        self.grouping = grouping
        self.depth = depth
        self.bucket = GROUPING_MULTIPLIERS[grouping]
        rng = random.Random(f"{seed}:{market.product}:{market.symbol}:seq:{grouping}")
        # A chain created later starts later: deterministic for a given subscribe history.
        self.seq = rng.randrange(1_000_000, 90_000_000) + market.steps
        self._agg = {BID: Side(True), ASK: Side(False)}
        self._raw: dict[tuple[str, int], int] = {}
        for name, side in ((BID, market.bids), (ASK, market.asks)):
            for price, size in side.levels.items():
                self._add_raw(name, price, size)
        self.window: dict[str, dict[int, int]] = {
            BID: dict(self._agg[BID].top(depth)),
            ASK: dict(self._agg[ASK].top(depth)),
        }

    def _bucket(self, side: str, price: int) -> int:
        if self.bucket == 1:
            return price
        if side == BID:
            return price // self.bucket * self.bucket
        return -(-price // self.bucket) * self.bucket

    def _add_raw(self, side: str, price: int, size: int) -> int:
        """Set a raw level; returns the bucket it lands in."""
        old = self._raw.pop((side, price), 0)
        if size > 0:
            self._raw[(side, price)] = size
        bucket = self._bucket(side, price)
        agg = self._agg[side]
        agg.set(bucket, agg.levels.get(bucket, 0) + size - old)
        return bucket

    def apply(self, changes: tuple[tuple[str, int, int], ...]) -> Delta | None:
        """Apply raw level changes; the topic's delta, or ``None`` if its window did not change."""
        touched: dict[str, set[int]] = {BID: set(), ASK: set()}
        fitted = {side: len(self._agg[side].prices) <= self.depth for side in (BID, ASK)}
        for side, price, size in changes:
            touched[side].add(self._add_raw(side, price, size))
        out: dict[str, Levels] = {}
        for side in (BID, ASK):
            if not touched[side]:
                out[side] = ()
                continue
            out[side] = self._window_delta(side, touched[side], fitted[side])
        if not out[BID] and not out[ASK]:
            return None
        self.seq += 1
        return Delta(self.seq, out[BID], out[ASK])

    def _window_delta(self, side: str, touched: set[int], fitted: bool) -> Levels:
        agg = self._agg[side]
        window = self.window[side]
        if fitted and len(agg.prices) <= self.depth:
            # The whole side fitted in the window before and after: only touched buckets change.
            delta = []
            for price in touched:
                size = agg.levels.get(price, 0)
                if window.get(price, 0) != size:
                    delta.append((price, size))
                    if size:
                        window[price] = size
                    else:
                        window.pop(price, None)
            return tuple(delta)
        new = dict(agg.top(self.depth))
        delta = [(p, s) for p, s in new.items() if window.get(p) != s]
        delta.extend((p, 0) for p in window if p not in new)
        self.window[side] = new
        return tuple(delta)

    def best(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Best bid and best ask of the window as (price, size)."""
        bid = self._agg[BID].best()
        ask = self._agg[ASK].best()
        return (
            (bid, self._agg[BID].levels[bid]) if bid is not None else None,
            (ask, self._agg[ASK].levels[ask]) if ask is not None else None,
        )

    def levels(self) -> tuple[Levels, Levels]:
        """The window best-first: bids descending, asks ascending."""
        bids = tuple(sorted(self.window[BID].items(), reverse=True))
        asks = tuple(sorted(self.window[ASK].items()))
        return bids, asks
