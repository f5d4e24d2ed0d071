"""Ground truth: what the simulated exchange really did, for tests to compare against (pure).

* the true book of every topic chain (product, symbol, grouping) after every seqNum it
  issued, within a bounded history (``history`` seqNums per chain; checkpoints plus replay);
* every trade, with the wall-clock time it was sent (``None`` for the warm-up trades that
  exist before the simulator starts and only ever travel in the recent-trades batch);
* every fault injected (kind, where, when, and the seqNum it affected).

Books are returned with prices and sizes as the exact strings the wire carries.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collector.simulator.book import Delta, Levels
from collector.simulator.market import SymbolInfo

CHECKPOINT_EVERY = 256


class TruthError(LookupError):
    """The truth was asked about a chain, or a seqNum, it does not hold."""


@dataclass(frozen=True)
class TrueBook:
    """A topic's book after ``seq``: both sides best-first, as wire strings."""

    product: str
    symbol: str
    grouping: int
    seq: int
    timestamp: int  # ms, the exchange time of the frame carrying ``seq``
    bids: tuple[tuple[str, str], ...]  # descending
    asks: tuple[tuple[str, str], ...]  # ascending

    def best_bid(self) -> tuple[str, str] | None:
        return self.bids[0] if self.bids else None

    def best_ask(self) -> tuple[str, str] | None:
        return self.asks[0] if self.asks else None


@dataclass(frozen=True)
class TrueTrade:
    product: str
    symbol: str
    trade_id: int
    side: str
    price: str
    size: str
    timestamp: int  # ms, the trade's exchange time
    sent_at: float | None  # wall-clock seconds it was broadcast; None: warm-up history


@dataclass(frozen=True)
class FaultRecord:
    kind: str
    at: float  # wall-clock seconds
    product: str | None = None
    symbol: str | None = None
    topic: str | None = None
    seq: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class ChainHistory:
    """Bounded history of one chain: the book every ``CHECKPOINT_EVERY`` seqNums + deltas."""

    def __init__(self, info: SymbolInfo, grouping: int, seq: int, ts: int,
                 bids: Levels, asks: Levels, history: int) -> None:
        self.info = info
        self.grouping = grouping
        self.history = max(history, CHECKPOINT_EVERY)
        self.first_seq = seq
        self.last_seq = seq
        self.last_ts = ts
        self._book = (dict(bids), dict(asks))
        self._checkpoints: deque[tuple[int, int, dict[int, int], dict[int, int]]] = deque()
        self._deltas: deque[tuple[int, int, Levels, Levels]] = deque()
        self._checkpoint(seq, ts)

    def _checkpoint(self, seq: int, ts: int) -> None:
        self._checkpoints.append((seq, ts, dict(self._book[0]), dict(self._book[1])))

    def record(self, delta: Delta, ts: int) -> None:
        if delta.seq != self.last_seq + 1:
            raise TruthError(f"chain {self.info.symbol}_{self.grouping}: seq {delta.seq} "
                             f"does not follow {self.last_seq}")
        for side, levels in ((self._book[0], delta.bids), (self._book[1], delta.asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        self._deltas.append((delta.seq, ts, delta.bids, delta.asks))
        self.last_seq = delta.seq
        self.last_ts = ts
        if (delta.seq - self.first_seq) % CHECKPOINT_EVERY == 0:
            self._checkpoint(delta.seq, ts)
        if len(self._deltas) > self.history + CHECKPOINT_EVERY and len(self._checkpoints) > 1:
            # Drop the oldest checkpoint and the deltas only it needed: what is kept replays.
            self._checkpoints.popleft()
            cutoff = self._checkpoints[0][0]
            while self._deltas and self._deltas[0][0] <= cutoff:
                self._deltas.popleft()

    @property
    def oldest_seq(self) -> int:
        return self._checkpoints[0][0]

    def book_at(self, seq: int | None) -> tuple[int, int, dict[int, int], dict[int, int]]:
        if seq is None or seq == self.last_seq:
            return self.last_seq, self.last_ts, self._book[0], self._book[1]
        if not self.oldest_seq <= seq <= self.last_seq:
            raise TruthError(f"{self.info.symbol}_{self.grouping}: seq {seq} outside the kept "
                             f"history {self.oldest_seq}..{self.last_seq}")
        base = self._checkpoints[0]
        for cp in self._checkpoints:
            if cp[0] <= seq:
                base = cp
        cseq, ts, bids_src, asks_src = base
        bids, asks = dict(bids_src), dict(asks_src)
        for dseq, dts, dbids, dasks in self._deltas:
            if dseq <= cseq:
                continue
            if dseq > seq:
                break
            ts = dts
            for side, levels in ((bids, dbids), (asks, dasks)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
        return seq, ts, bids, asks


class Truth:
    """Everything the simulator really did; see the module docstring."""

    def __init__(self, history: int = 20_000) -> None:
        self.history = history
        self._chains: dict[tuple[str, str, int], ChainHistory] = {}
        self._trades: dict[tuple[str, str], list[TrueTrade]] = {}
        self.faults: list[FaultRecord] = []

    # -- recording (the simulator calls these) ------------------------------------------

    def open_chain(self, product: str, symbol: str, info: SymbolInfo, grouping: int,
                   seq: int, ts: int, bids: Levels, asks: Levels) -> None:
        self._chains[(product, symbol, grouping)] = ChainHistory(
            info, grouping, seq, ts, bids, asks, self.history)

    def record_delta(self, product: str, symbol: str, grouping: int, delta: Delta,
                     ts: int) -> None:
        self._chain(product, symbol, grouping).record(delta, ts)

    def record_trade(self, trade: TrueTrade) -> None:
        self._trades.setdefault((trade.product, trade.symbol), []).append(trade)

    def record_fault(self, record: FaultRecord) -> None:
        self.faults.append(record)

    # -- queries -----------------------------------------------------------------------

    def _chain(self, product: str, symbol: str, grouping: int) -> ChainHistory:
        try:
            return self._chains[(product, symbol, grouping)]
        except KeyError:
            known = ", ".join(f"{p}/{s}_{g}" for p, s, g in sorted(self._chains)) or "none"
            raise TruthError(f"no book chain {product}/{symbol}_{grouping} (known: {known})") from None

    def chains(self) -> list[tuple[str, str, int]]:
        return sorted(self._chains)

    def book(self, product: str, symbol: str, grouping: int = 0,
             seq: int | None = None) -> TrueBook:
        """The topic's true book after ``seq`` (default: the latest)."""
        chain = self._chain(product, symbol, grouping)
        at, ts, bids, asks = chain.book_at(seq)
        info = chain.info
        return TrueBook(
            product, symbol, grouping, at, ts,
            tuple((info.price_str(p), info.size_str(bids[p])) for p in sorted(bids, reverse=True)),
            tuple((info.price_str(p), info.size_str(asks[p])) for p in sorted(asks)),
        )

    def last_seq(self, product: str, symbol: str, grouping: int = 0) -> int:
        return self._chain(product, symbol, grouping).last_seq

    def oldest_seq(self, product: str, symbol: str, grouping: int = 0) -> int:
        """The oldest seqNum :meth:`book` can still answer for."""
        return self._chain(product, symbol, grouping).oldest_seq

    def trades(self, product: str, symbol: str) -> list[TrueTrade]:
        """Every trade of the market in trade-id order (warm-up history first)."""
        return list(self._trades.get((product, symbol), ()))

    def to_json(self) -> dict[str, Any]:
        books = []
        for product, symbol, grouping in self.chains():
            book = self.book(product, symbol, grouping)
            books.append(asdict(book))
        return {
            "books": books,
            "trades": [asdict(t) for key in sorted(self._trades) for t in self._trades[key]],
            "faults": [asdict(f) for f in self.faults],
        }

    def dump_json(self, path: str | Path) -> Path:
        """Write the latest books, every trade and every fault as JSON; returns the path."""
        out = Path(path)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(out)
        return out
