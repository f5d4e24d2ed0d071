"""A pure, seeded market model: one raw order book per (product, symbol) plus its trades.

Nothing here knows about time, sockets or JSON. :class:`Market` holds the raw book in
integer units (price in ticks, size in lots: base-currency lots for spot, contracts for
futures) and :meth:`Market.step` advances it by one deterministic event drawn from a
``random.Random`` seeded with ``(seed, product, symbol)``: the same seed always produces the
same sequence of book changes and trades, whatever the timing of the caller.

Every event keeps the book sane: never crossed, 20-60 levels a side, trades at the best
level of the side they hit (a BUY takes the best ask) and never larger than that level.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

BID = "bid"
ASK = "ask"
MIN_LEVELS = 20
MAX_LEVELS = 60


def format_units(units: int, decimals: int) -> str:
    """``format_units(866260, 1) == "86626.0"``: a fixed-decimals string, trailing zeros kept."""
    if decimals == 0:
        return str(units)
    scale = 10**decimals
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // scale}.{units % scale:0{decimals}d}"


@dataclass(frozen=True)
class SymbolInfo:
    """How one market's numbers look on the wire.

    ``tick_units`` is the tick size in units of ``10**-price_decimals`` (BTC-USD: tick 0.5 with
    one decimal -> 5). Spot sizes are lots of ``10**-size_decimals`` base currency; futures sizes
    are whole contracts (``size_decimals == 0``) of ``contract_size`` base currency.
    """

    symbol: str
    product: str
    price_decimals: int
    tick_units: int
    size_decimals: int
    start_price: float
    median_size_lots: int
    contract_size: float | None = None

    def price_str(self, ticks: int) -> str:
        return format_units(ticks * self.tick_units, self.price_decimals)

    def size_str(self, lots: int) -> str:
        return format_units(lots, self.size_decimals)

    def price_number(self, ticks: int) -> float:
        """The price as a JSON number would carry it (trade frames)."""
        return float(ticks * self.tick_units) / float(10**self.price_decimals)

    def size_number(self, lots: int) -> float | int:
        return lots if self.size_decimals == 0 else lots / 10**self.size_decimals


# Known markets (tick sizes and decimals as seen on the wire / in the docs). Others get a
# generic profile from :func:`symbol_info`.
_KNOWN: dict[tuple[str, str], tuple[int, int, int, float, int, float | None]] = {
    # (product, symbol): (price_decimals, tick_units, size_decimals, start, median lots, contract)
    ("spot", "BTC-USD"): (1, 5, 5, 60000.0, 20000, None),
    ("spot", "BTC-USDT"): (1, 5, 5, 60000.0, 20000, None),
    ("spot", "ETH-USD"): (2, 1, 4, 3000.0, 20000, None),
    ("spot", "ETH-USDT"): (2, 1, 4, 3000.0, 20000, None),
    ("otc", "BTC-USD"): (2, 1, 5, 60000.0, 50000, None),
    ("otc", "ETH-USD"): (2, 1, 4, 3000.0, 50000, None),
    ("futures", "BTC-PERP"): (1, 1, 0, 86600.0, 30000, 0.00001),
    ("futures", "ETH-PERP"): (2, 1, 0, 2766.0, 20000, 0.001),
    ("futures", "SNDK-PERP"): (2, 1, 0, 1876.0, 200, 0.01),
}

# Legacy futures names (pre-April 2023) that BTSE still serves: alias -> canonical symbol.
LEGACY_ALIASES: dict[str, str] = {"BTCPFC": "BTC-PERP", "ETHPFC": "ETH-PERP"}


def legacy_alias(symbol: str) -> str | None:
    """The legacy wire name of a futures symbol (``BTC-PERP`` -> ``BTCPFC``), if it has one."""
    for alias, canonical in LEGACY_ALIASES.items():
        if canonical == symbol:
            return alias
    if symbol.endswith("-PERP"):
        return symbol.removesuffix("-PERP").replace("-", "") + "PFC"
    return None


def symbol_info(product: str, symbol: str) -> SymbolInfo:
    known = _KNOWN.get((product, symbol))
    if known is None and product == "futures":
        base = symbol.split("-", 1)[0]
        known = _KNOWN.get((product, f"{base}-PERP"))
    if known is None:
        contract = 0.01 if product == "futures" else None
        size_decimals = 0 if product == "futures" else 4
        known = (2, 1, size_decimals, 100.0, 500 if product == "futures" else 20000, contract)
    decimals, tick, size_dec, start, median, contract = known
    return SymbolInfo(symbol, product, decimals, tick, size_dec, start, median, contract)


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: int
    side: str  # taker side: BUY hits the best ask, SELL the best bid
    price_ticks: int
    size_lots: int


@dataclass(frozen=True, slots=True)
class Step:
    """One market event: raw level changes (absolute new sizes, 0 = gone) and maybe a trade."""

    index: int
    changes: tuple[tuple[str, int, int], ...]  # (side, price_ticks, new size_lots)
    trade: Trade | None


class Side:
    """One side of the raw book: a price->size dict plus the prices kept sorted ascending."""

    __slots__ = ("is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, int] = {}
        self.prices: list[int] = []

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def by_rank(self, rank: int) -> int:
        """Price of the ``rank``-th level from the top (0 = best)."""
        return self.prices[-1 - rank] if self.is_bid else self.prices[rank]

    def set(self, price: int, size: int) -> None:
        if size <= 0:
            if price in self.levels:
                del self.levels[price]
                self.prices.pop(bisect.bisect_left(self.prices, price))
            return
        if price not in self.levels:
            bisect.insort(self.prices, price)
        self.levels[price] = size

    def top(self, n: int) -> list[tuple[int, int]]:
        prices = self.prices[-n:][::-1] if self.is_bid else self.prices[:n]
        return [(p, self.levels[p]) for p in prices]


class Market:
    """The raw book and trade tape of one (product, symbol), advanced by :meth:`step`."""

    def __init__(self, product: str, symbol: str, seed: int, *, symbol_index: int = 0) -> None:
        self.product = product
        self.symbol = symbol
        self.info = symbol_info(product, symbol)
        self.rng = random.Random(f"{seed}:{product}:{symbol}")
        self.bids = Side(True)
        self.asks = Side(False)
        self.steps = 0
        # Trade ids: increasing per market and unique across markets of one simulator.
        self._trade_stride = 64
        self._next_trade_id = 50_000_000 + self.rng.randrange(1_000_000) * 64 + symbol_index % 64
        mid = round(self.info.start_price * 10**self.info.price_decimals / self.info.tick_units)
        self._anchor = mid
        n_bids = self.rng.randint(30, 50)
        n_asks = self.rng.randint(30, 50)
        price = mid - 1
        for _ in range(n_bids):
            self.bids.set(price, self._size())
            price -= self.rng.choice((1, 1, 1, 2, 3))
        price = mid + 1
        for _ in range(n_asks):
            self.asks.set(price, self._size())
            price += self.rng.choice((1, 1, 1, 2, 3))

    # -- helpers ---------------------------------------------------------------------------

    def _size(self) -> int:
        median = self.info.median_size_lots
        size = int(median * math.exp(self.rng.gauss(0.0, 1.0)))
        return max(1, size)

    def _rank(self, n_levels: int) -> int:
        """A level rank biased towards the top of the book."""
        rank = int(self.rng.expovariate(0.35))
        return min(rank, n_levels - 1)

    def side(self, name: str) -> Side:
        return self.bids if name == BID else self.asks

    def level(self, side: str, price: int) -> int:
        return self.side(side).levels.get(price, 0)

    # -- the step --------------------------------------------------------------------------

    def step(self) -> Step:
        """Advance the market by one event and return what changed."""
        self.steps += 1
        changes: dict[tuple[str, int], int] = {}
        trade: Trade | None = None
        roll = self.rng.random()
        if roll < 0.16:
            trade = self._trade(changes)
        elif roll < 0.55:
            self._modify(changes, self.rng.randint(1, 5))
        elif roll < 0.70:
            self._insert(changes)
        elif roll < 0.80:
            self._cancel(changes)
        else:
            self._move(changes)
        self._keep_depth(changes)
        if not changes:  # every step changes the book
            self._modify(changes, 1)
        return Step(self.steps, tuple((s, p, z) for (s, p), z in changes.items()), trade)

    def _set(self, changes: dict[tuple[str, int], int], side: str, price: int, size: int) -> None:
        self.side(side).set(price, size)
        changes[(side, price)] = max(size, 0)

    def _pick_side(self) -> str:
        return BID if self.rng.random() < 0.5 else ASK

    def _modify(self, changes: dict[tuple[str, int], int], count: int) -> None:
        for _ in range(count):
            name = self._pick_side()
            side = self.side(name)
            price = side.by_rank(self._rank(len(side.prices)))
            old = side.levels[price]
            new = self._size()
            if new == old:
                new += 1
            self._set(changes, name, price, new)

    def _insert(self, changes: dict[tuple[str, int], int]) -> None:
        name = self._pick_side()
        side = self.side(name)
        best = side.best()
        other = self.side(ASK if name == BID else BID).best()
        assert best is not None and other is not None
        offset = self._rank(40) + 1
        price = best - offset if name == BID else best + offset
        if price <= 0 or price in side.levels:
            self._modify(changes, 1)
            return
        self._set(changes, name, price, self._size())

    def _cancel(self, changes: dict[tuple[str, int], int]) -> None:
        name = self._pick_side()
        side = self.side(name)
        if len(side.prices) <= MIN_LEVELS:
            self._insert(changes)
            return
        price = side.by_rank(1 + self._rank(len(side.prices) - 1))
        self._set(changes, name, price, 0)

    def _move(self, changes: dict[tuple[str, int], int]) -> None:
        """Move the touch: improve inside the spread, or pull the best level."""
        best_bid, best_ask = self.bids.best(), self.asks.best()
        assert best_bid is not None and best_ask is not None
        mid = (best_bid + best_ask) / 2
        # Mean reversion towards the anchor keeps prices positive and bounded over long runs.
        up_bias = 0.5 + max(-0.2, min(0.2, (self._anchor - mid) / (self._anchor * 0.02 + 1)))
        going_up = self.rng.random() < up_bias
        spread = best_ask - best_bid
        if spread > 1 and self.rng.random() < 0.6:
            if going_up:
                self._set(changes, BID, best_bid + self.rng.randint(1, spread - 1), self._size())
            else:
                self._set(changes, ASK, best_ask - self.rng.randint(1, spread - 1), self._size())
        else:
            if going_up and len(self.asks.prices) > MIN_LEVELS:
                self._set(changes, ASK, best_ask, 0)
            elif not going_up and len(self.bids.prices) > MIN_LEVELS:
                self._set(changes, BID, best_bid, 0)
            else:
                self._modify(changes, 2)

    def _trade(self, changes: dict[tuple[str, int], int]) -> Trade:
        taker = "BUY" if self.rng.random() < 0.5 else "SELL"
        name = ASK if taker == "BUY" else BID
        side = self.side(name)
        price = side.best()
        assert price is not None
        available = side.levels[price]
        if len(side.prices) > MIN_LEVELS and self.rng.random() < 0.3:
            size = available  # takes the whole level: the touch moves
        else:
            size = max(1, min(available, int(available * self.rng.uniform(0.01, 0.6))))
        self._set(changes, name, price, available - size)
        trade = Trade(self._next_trade_id, taker, price, size)
        self._next_trade_id += self._trade_stride
        return trade

    def _keep_depth(self, changes: dict[tuple[str, int], int]) -> None:
        for name in (BID, ASK):
            side = self.side(name)
            while len(side.prices) > MAX_LEVELS:
                worst = side.prices[0] if side.is_bid else side.prices[-1]
                self._set(changes, name, worst, 0)
            while len(side.prices) < MIN_LEVELS:
                worst = side.prices[0] if side.is_bid else side.prices[-1]
                price = worst - self.rng.randint(1, 3) if side.is_bid else worst + self.rng.randint(1, 3)
                if price <= 0:
                    break
                self._set(changes, name, price, self._size())

    # -- views -----------------------------------------------------------------------------

    def top(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Best-first (bids descending, asks ascending) ``depth`` levels of each side."""
        return self.bids.top(depth), self.asks.top(depth)

    def run(self, steps: int) -> Iterable[Step]:
        for _ in range(steps):
            yield self.step()
