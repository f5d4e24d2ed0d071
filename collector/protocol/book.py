"""The order-book engine: one :class:`OrderBook` per (product, symbol, grouping).

Each side maps price -> amount (floats, exact: see :mod:`numbers`; a ``dict`` in the pure-Python
core, a hash table of doubles in the C core, read as a dict copy through ``bids``/``asks``) plus its cached
best price, updated as levels arrive (a better price, or the best one changing amount). Only
when the best level itself is deleted is the side searched (``max``/``min``: BTSE keeps a
topic's book at 50 levels per side, so that is bounded). Nothing is sorted per frame; top-N
and full depth (snapshot rows, resyncs) sort the side when asked.

State machine (BTSE's sequencing rules, reference §3.6)::

    SYNCING ──snapshot──▶ LIVE ──gap / crossed──▶ RESYNCING ──snapshot──▶ LIVE
       ▲                   │ duplicate: ignored, counted (stays LIVE)
       └── reset() (disconnect, subscribe sent) from any state

- ``SYNCING``: waiting for the first snapshot; deltas are not applied and are counted.
- ``LIVE``: a delta whose ``seqNum`` is not newer than the last one is a *duplicate* (ignored,
  counted, not a gap); a delta whose ``prevSeqNum`` differs from the last ``seqNum`` is a *gap*;
  after applying a delta, best bid >= best ask is a *crossed* book. Gap and crossed move the book
  to ``RESYNCING`` (the caller resubscribes that topic only).
- ``RESYNCING``: deltas are ignored (counted) until the next snapshot.

``apply_delta`` returns an ``int`` outcome (no object per frame); the details of the last gap /
duplicate (expected and received sequence numbers) are attributes of the book.

Two implementations of the per-frame part (state, sides, ``apply_delta``, ``top_changed``):
``PyBookCore`` here and ``BookCore`` of the C speedups (:mod:`native`), with the same fields and
outcomes. ``OrderBook`` is built on the C one when it is there (``PyOrderBook`` always on the
Python one); everything else (snapshots, top-N, depth) is shared Python (``_BookMethods``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from collector.protocol import native


class BookState(Enum):
    SYNCING = "syncing"
    LIVE = "live"
    RESYNCING = "resyncing"


SYNCING = BookState.SYNCING
LIVE = BookState.LIVE
RESYNCING = BookState.RESYNCING
_STATES = (SYNCING, LIVE, RESYNCING)  # BookCore._state -> BookState
_STATE_CODES = {state: code for code, state in enumerate(_STATES)}
_SYNCING = 0
_LIVE = 1
_RESYNCING = 2

# apply_delta outcomes
APPLIED = 0  # applied, top of book unchanged
APPLIED_TOP = 1  # applied, best bid/ask price or amount changed
SKIPPED = 2  # not LIVE (SYNCING or RESYNCING): not applied, counted
DUPLICATE = 3  # seqNum not newer than the last one: ignored, counted
GAP = 4  # prevSeqNum != last seqNum: now RESYNCING
CROSSED = 5  # applied, then best bid >= best ask: now RESYNCING

OUTCOME_NAMES = ("applied", "applied_top", "skipped", "duplicate", "gap", "crossed")

Level = tuple[float, float]

_NEG_INF = float("-inf")
_POS_INF = float("inf")


class PyBookCore:
    """The per-frame part of an order book in pure Python (the twin of the C ``BookCore``)."""

    __slots__ = (
        "_best_ask",
        "_best_bid",
        "_state",
        "_top",
        "asks",
        "bids",
        "crossed_count",
        "duplicate_count",
        "expected_seq",
        "gap_count",
        "key",
        "last_seq",
        "received_seq",
        "skipped_count",
        "skipped_since_sync",
        "timestamp_us",
    )

    bids: dict[float, float]
    asks: dict[float, float]
    _best_bid: float
    _best_ask: float
    _state: int
    _top: tuple[float | None, float | None, float | None, float | None]
    last_seq: int
    timestamp_us: int | None
    expected_seq: int | None
    received_seq: int | None
    skipped_count: int
    skipped_since_sync: int
    duplicate_count: int
    gap_count: int
    crossed_count: int
    key: tuple[str, str, int]

    def apply_delta(
        self,
        bids: Sequence[Level],
        asks: Sequence[Level],
        seq: int,
        prev_seq: int,
        timestamp_us: int | None = None,
    ) -> int:
        """Apply one delta (absolute amounts, 0 deletes); returns an outcome constant."""
        last = self.last_seq
        if self._state != _LIVE or seq <= last or prev_seq != last:
            return self._not_applied(seq, prev_seq)
        touched = False  # did a level at or better than the best price change?
        if bids:
            book = self.bids
            best = self._best_bid
            lost = False  # the best level was deleted: the next best is searched once
            for price, amount in bids:
                if amount:
                    book[price] = amount
                    if price >= best:
                        best = price
                        touched = True
                elif price in book:
                    del book[price]
                    if price == best:
                        lost = True
            if lost:
                touched = True
                best = max(book, default=_NEG_INF)
            self._best_bid = best
        if asks:
            book = self.asks
            best = self._best_ask
            lost = False
            for price, amount in asks:
                if amount:
                    book[price] = amount
                    if price <= best:
                        best = price
                        touched = True
                elif price in book:
                    del book[price]
                    if price == best:
                        lost = True
            if lost:
                touched = True
                best = min(book, default=_POS_INF)
            self._best_ask = best
        self.last_seq = seq
        self.timestamp_us = timestamp_us
        if not touched:
            return APPLIED
        bb = self._best_bid
        ba = self._best_ask
        if bb >= ba:
            self.crossed_count += 1
            self.expected_seq = None
            self.received_seq = seq
            self._state = _RESYNCING
            return CROSSED
        return APPLIED_TOP if self.top_changed() else APPLIED

    def _not_applied(self, seq: int, prev_seq: int) -> int:
        """The outcome of a delta that is not applied: SKIPPED, DUPLICATE or GAP."""
        if self._state != _LIVE:
            self.skipped_count += 1
            self.skipped_since_sync += 1
            return SKIPPED
        last = self.last_seq
        if seq <= last:
            self.duplicate_count += 1
            self.expected_seq = last
            self.received_seq = seq
            return DUPLICATE
        self.gap_count += 1
        self.expected_seq = last
        self.received_seq = prev_seq
        self._state = _RESYNCING
        return GAP

    def side_sizes(self) -> tuple[int, int]:
        """(number of bid levels, number of ask levels)."""
        return len(self.bids), len(self.asks)

    def top_changed(self) -> bool:
        """Recompute the cached top of book; True if it differs from the cached one."""
        bb = self._best_bid
        ba = self._best_ask
        top = (
            bb if self.bids else None,
            self.bids[bb] if self.bids else None,
            ba if self.asks else None,
            self.asks[ba] if self.asks else None,
        )
        if top != self._top:
            self._top = top
            return True
        return False


# for mypy the shared methods see the fields and methods of the core (both cores have them)
if TYPE_CHECKING:
    _Core = PyBookCore
else:
    _Core = object


class _BookMethods(_Core):
    """What both implementations share: construction, snapshots, state, reading."""

    if not TYPE_CHECKING:  # no instance layout of its own (mypy: the fields are declared below)
        __slots__ = ()

    if TYPE_CHECKING:  # the fields of the owner (the core's come from PyBookCore, see above)
        product: str
        symbol: str
        grouping: int
        topic: str | None
        conn_id: str | None
        next_snapshot_us: int
        sync_count: int

    def __init__(self, product: str, symbol: str, grouping: int = 0, topic: str | None = None):
        self.product = product
        self.symbol = symbol
        self.grouping = grouping
        self.topic = topic
        self.key = (product, symbol, grouping)
        self.conn_id = None  # the connection that feeds it (set by the owner)
        self._state = _SYNCING
        self.bids = {}
        self.asks = {}
        self._best_bid = _NEG_INF  # cached best prices (-inf / +inf: that side is empty)
        self._best_ask = _POS_INF
        self._top = (None, None, None, None)
        self.last_seq = -1
        self.next_snapshot_us = 0  # scheduling field for the owner (normalizer)
        self.timestamp_us = None
        self.expected_seq = None
        self.received_seq = None
        self.skipped_count = 0  # deltas not applied because not LIVE (all time)
        self.skipped_since_sync = 0  # ... since the last snapshot
        self.duplicate_count = 0
        self.gap_count = 0
        self.crossed_count = 0
        self.sync_count = 0

    @property
    def state(self) -> BookState:
        return _STATES[self._state]

    @state.setter
    def state(self, value: BookState) -> None:
        self._state = _STATE_CODES[value]

    # -- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to SYNCING with an empty book (disconnect, resubscribe sent)."""
        self._state = _SYNCING
        self.bids = {}  # assigned, not cleared: the C core's bids/asks are copies
        self.asks = {}
        self._best_bid = _NEG_INF
        self._best_ask = _POS_INF
        self._top = (None, None, None, None)
        self.last_seq = -1

    def mark_resyncing(self) -> None:
        """Move to RESYNCING (e.g. the caller decided to resubscribe)."""
        self._state = _RESYNCING

    # -- applying ------------------------------------------------------------------------

    def apply_snapshot(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        seq: int,
        timestamp_us: int | None = None,
    ) -> int:
        """Replace the whole book (any state) and go LIVE; returns APPLIED_TOP or CROSSED.

        A repeated price keeps its last amount; zero amounts are not levels. A crossed
        snapshot is kept (so it can be inspected) but the book goes to RESYNCING.
        """
        self.bids = {p: a for p, a in dict(bids).items() if a}
        self.asks = {p: a for p, a in dict(asks).items() if a}
        self._best_bid = max(self.bids, default=_NEG_INF)
        self._best_ask = min(self.asks, default=_POS_INF)
        self.last_seq = seq
        self.timestamp_us = timestamp_us
        self._state = _LIVE
        self.sync_count += 1
        self.skipped_since_sync = 0
        self.top_changed()
        if self.is_crossed():
            self.crossed_count += 1
            self.expected_seq = None
            self.received_seq = seq
            self._state = _RESYNCING
            return CROSSED
        return APPLIED_TOP

    # -- reading -------------------------------------------------------------------------

    @property
    def top(self) -> tuple[float | None, float | None, float | None, float | None]:
        """Cached (best bid price, its amount, best ask price, its amount); None if empty."""
        return self._top

    def best_bid(self) -> Level | None:
        """(price, amount) of the best bid, read from the side (also after a crossed delta)."""
        return (self._best_bid, self.bids[self._best_bid]) if self.side_sizes()[0] else None

    def best_ask(self) -> Level | None:
        return (self._best_ask, self.asks[self._best_ask]) if self.side_sizes()[1] else None

    def top_bids(self, n: int) -> list[Level]:
        """The best ``n`` bids, best first (sorted here: snapshots and resyncs only)."""
        book = self.bids
        return [(p, book[p]) for p in sorted(book, reverse=True)[:n]] if n > 0 else []

    def top_asks(self, n: int) -> list[Level]:
        """The best ``n`` asks, best first."""
        book = self.asks
        return [(p, book[p]) for p in sorted(book)[:n]] if n > 0 else []

    def depth(self) -> tuple[list[Level], list[Level]]:
        """Full depth: (bids best first, asks best first)."""
        bids, asks = self.side_sizes()
        return self.top_bids(bids), self.top_asks(asks)

    def is_crossed(self) -> bool:
        bids, asks = self.side_sizes()
        return bool(bids and asks and self._best_bid >= self._best_ask)

    def __len__(self) -> int:
        return sum(self.side_sizes())

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.product}:{self.symbol}_{self.grouping} {self.state.value} "
            f"seq={self.last_seq} sizes={self.side_sizes()} top={self._top})"
        )

_OWNER_SLOTS = ("conn_id", "grouping", "next_snapshot_us", "product", "symbol", "sync_count", "topic")


class PyOrderBook(_BookMethods, PyBookCore):
    """One BTSE order book with its sequencing state, pure Python. Not thread-safe; pure."""

    __slots__ = _OWNER_SLOTS


def _c_order_book() -> type[Any] | None:
    if native.speedups is None:
        return None

    class COrderBook(_BookMethods, native.speedups.BookCore):  # type: ignore[misc,name-defined]
        """One BTSE order book with its sequencing state, on the C core. Not thread-safe."""

        __slots__ = _OWNER_SLOTS

    COrderBook.__module__ = __name__
    COrderBook.__qualname__ = "COrderBook"
    return COrderBook


COrderBook = _c_order_book()

if TYPE_CHECKING:
    OrderBook = PyOrderBook
else:
    OrderBook = COrderBook or PyOrderBook


def book_class(speedups: bool | None = None) -> type[PyOrderBook]:
    """The OrderBook class: on the C core (``speedups`` True, or None and built) or Python."""
    return COrderBook if native.use_speedups(speedups) else PyOrderBook  # type: ignore[return-value]
