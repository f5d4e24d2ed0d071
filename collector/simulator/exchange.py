"""The exchange core: markets, topic chains, subscriptions and market faults (no sockets).

:class:`Exchange` owns one :class:`~collector.simulator.market.Market` per (product, symbol),
the :class:`~collector.simulator.book.BookView` of every grouping chain, and the
:class:`~collector.simulator.truth.Truth`. A subscriber is any object with ``enqueue(frame)``
(the server's connection); :meth:`Exchange.advance` steps a market and fans the frames out.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.simulator import frames
from collector.simulator.book import BookView, Delta
from collector.simulator.market import ASK, BID, Market, legacy_alias
from collector.simulator.session import OtcQuote, TopicRef
from collector.simulator.truth import FaultRecord, TrueTrade, Truth
from collector.specs import SpecRegistry as Registry


class Sink(Protocol):
    id: int

    def enqueue(self, frame: str) -> None: ...


@dataclass
class _Renamed:
    alias: str
    until: float | None  # wall-clock seconds, None: until switched off


Key = tuple[str, str]  # (product, symbol)
ChainKey = tuple[str, str, int]  # (product, symbol, grouping)


class Exchange:
    """See the module docstring. ``clock`` returns wall-clock seconds (frame timestamps)."""

    def __init__(self, registry: Registry, seed: int, symbols: dict[str, list[str]],
                 clock: Callable[[], float], *, history: int = 20_000,
                 recent_trades: int = 20, warmup: int = 300, groupings: Iterable[int] = (0,)) -> None:
        self.registry = registry
        self.seed = seed
        self.clock = clock
        self.recent_trades = recent_trades
        self.truth = Truth(history)
        self.markets: dict[Key, Market] = {}
        self.views: dict[Key, dict[int, BookView]] = {}
        self.tapes: dict[Key, list[TrueTrade]] = {}
        self.book_subs: dict[ChainKey, dict[tuple[int, str], tuple[Sink, TopicRef]]] = {}
        self.l1_subs: dict[Key, dict[tuple[int, str], tuple[Sink, TopicRef]]] = {}
        self.trade_subs: dict[Key, dict[tuple[int, str], tuple[Sink, TopicRef]]] = {}
        self.quotes: dict[int, tuple[Sink, bool, dict[tuple[Any, ...], OtcQuote]]] = {}
        self.last_delta: dict[ChainKey, Delta] = {}
        self.gap_pending: dict[ChainKey, int] = {}
        self.renamed: dict[Key, _Renamed] = {}
        self._last_l1: dict[Key, tuple[Any, Any]] = {}
        self._otc_rng = random.Random(f"{seed}:otc-quote-ids")
        index = 0
        for product, names in symbols.items():
            for symbol in names:
                market = Market(product, symbol, seed, symbol_index=index)
                index += 1
                key = (product, symbol)
                self.markets[key] = market
                self.tapes[key] = []
                ts0 = int(clock() * 1000) - warmup * 200
                for i in range(warmup):  # history before start: recent trades exist at once
                    step = market.step()
                    if step.trade is not None:
                        self._tape(key, step.trade, ts0 + i * 200, None)
                if product != "otc":
                    self.views[key] = {}
                    for grouping in sorted(set(groupings) | {0}):
                        self.view(key, grouping)

    # -- chains ---------------------------------------------------------------------------

    def symbols(self, product: str) -> frozenset[str]:
        return frozenset(s for p, s in self.markets if p == product)

    def view(self, key: Key, grouping: int) -> BookView:
        views = self.views[key]
        if grouping not in views:
            view = BookView(self.markets[key], grouping, self.seed)
            views[grouping] = view
            bids, asks = view.levels()
            self.truth.open_chain(key[0], key[1], view.market.info, grouping, view.seq,
                                  self.now_ms(), bids, asks)
        return views[grouping]

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def wire(self, key: Key, ref: TopicRef, topic: str | None = None) -> tuple[str, str]:
        """(topic, symbol) as frames spell them right now (legacy rename fault applied)."""
        topic = topic or ref.frame_topic or ref.topic
        symbol = ref.wire_symbol or key[1]
        renamed = self.renamed.get(key)
        if renamed is not None:
            if renamed.until is not None and self.clock() >= renamed.until:
                del self.renamed[key]
            elif symbol == key[1]:
                return topic.replace(key[1], renamed.alias), renamed.alias
        return topic, symbol

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, sink: Sink, ref: TopicRef) -> None:
        """Register a subscription and send what BTSE sends right after it."""
        if ref.silent or ref.symbol is None:
            return
        key = (ref.product, ref.symbol)
        ident = (sink.id, ref.topic)
        if ref.kind == "book":
            assert ref.grouping is not None
            view = self.view(key, ref.grouping)
            self.book_subs.setdefault((*key, ref.grouping), {})[ident] = (sink, ref)
            sink.enqueue(self.snapshot(key, ref, view.seq))
        elif ref.kind == "l1":
            self.l1_subs.setdefault(key, {})[ident] = (sink, ref)
            bid, ask = self.views[key][0].best()
            topic, symbol = self.wire(key, ref)
            sink.enqueue(frames.l1_frame(topic, symbol, self.markets[key].info, bid, ask,
                                         self.now_ms()))
        elif ref.kind == "trades":
            self.trade_subs.setdefault(key, {})[ident] = (sink, ref)
            recent = self.tapes[key][-self.recent_trades:][::-1]  # newest first
            if recent:
                sink.enqueue(self._trades_frame(key, ref, recent))

    def snapshot(self, key: Key, ref: TopicRef, seq: int) -> str:
        """The raw (ungrouped, as documented) top-50 book, stamped with the chain's seqNum."""
        bids, asks = self.views[key][0].levels()
        topic, symbol = self.wire(key, ref, ref.topic)
        return frames.snapshot_frame(topic, symbol, self.markets[key].info, seq, bids, asks,
                                     self.now_ms())

    def unsubscribe(self, sink: Sink, ref: TopicRef) -> None:
        if ref.symbol is None:
            return
        key = (ref.product, ref.symbol)
        ident = (sink.id, ref.topic)
        if ref.kind == "book" and ref.grouping is not None:
            self.book_subs.get((*key, ref.grouping), {}).pop(ident, None)
        elif ref.kind == "l1":
            self.l1_subs.get(key, {}).pop(ident, None)
        elif ref.kind == "trades":
            self.trade_subs.get(key, {}).pop(ident, None)

    def drop(self, sink: Sink, refs: Iterable[TopicRef]) -> None:
        for ref in refs:
            self.unsubscribe(sink, ref)
        self.quotes.pop(sink.id, None)

    # -- stepping --------------------------------------------------------------------------

    def advance(self, key: Key) -> None:
        """One market event, fanned out to every subscriber."""
        market = self.markets[key]
        step = market.step()
        if key[0] == "otc":
            self._send_quotes(key)
            return
        ts = self.now_ms()
        info = market.info
        for grouping, view in self.views[key].items():
            delta = view.apply(step.changes)
            if delta is None:
                continue
            chain = (*key, grouping)
            self.truth.record_delta(key[0], key[1], grouping, delta, ts)
            self.last_delta[chain] = delta
            if self.gap_pending.get(chain):
                self.gap_pending[chain] -= 1
                self.fault("gap", key, topic=None, seq=delta.seq, grouping=grouping)
                continue
            self._fan_book(chain, delta, ts, "delta")
        bid_ask = self.views[key][0].best()
        if bid_ask != self._last_l1.get(key):
            self._last_l1[key] = bid_ask
            for sink, ref in list(self.l1_subs.get(key, {}).values()):
                topic, symbol = self.wire(key, ref)
                sink.enqueue(frames.l1_frame(topic, symbol, info, bid_ask[0], bid_ask[1], ts))
        if step.trade is not None:
            trade = self._tape(key, step.trade, ts, self.clock())
            subs = self.trade_subs.get(key)
            if subs:
                for sink, ref in list(subs.values()):
                    sink.enqueue(self._trades_frame(key, ref, [trade]))

    def _fan_book(self, chain: ChainKey, delta: Delta, ts: int, kind: str) -> None:
        subs = self.book_subs.get(chain)
        if not subs:
            return
        key = (chain[0], chain[1])
        info = self.markets[key].info
        cache: dict[tuple[str, str], str] = {}
        for sink, ref in list(subs.values()):
            spelled = self.wire(key, ref)
            text = cache.get(spelled)
            if text is None:
                text = frames.book_frame(spelled[0], spelled[1], info, kind, delta.seq,
                                         delta.bids, delta.asks, ts)
                cache[spelled] = text
            sink.enqueue(text)

    def _tape(self, key: Key, trade: Any, ts: int, sent_at: float | None) -> TrueTrade:
        info = self.markets[key].info
        true = TrueTrade(key[0], key[1], trade.trade_id, trade.side, info.price_str(trade.price_ticks),
                         info.size_str(trade.size_lots), ts, sent_at)
        tape = self.tapes[key]
        tape.append(true)
        if len(tape) > 4 * self.recent_trades + 100:
            del tape[: len(tape) - 2 * self.recent_trades]
        self.truth.record_trade(true)
        return true

    def _trades_frame(self, key: Key, ref: TopicRef, trades: list[TrueTrade]) -> str:
        market = self.markets[key]
        topic, symbol = self.wire(key, ref)
        info = market.info
        entries = []
        for t in trades:
            ticks = round(float(t.price) * 10**info.price_decimals / info.tick_units)
            lots = round(float(t.size) * 10**info.size_decimals)
            entries.append(frames.trade_entry(info, symbol, t.side, ticks, lots, t.trade_id,
                                              t.timestamp))
        return frames.trades_frame(topic, entries)

    # -- OTC -------------------------------------------------------------------------------

    def add_quote(self, sink: Sink, authenticated: bool, quote: OtcQuote) -> None:
        entry = self.quotes.setdefault(sink.id, (sink, authenticated, {}))
        self.quotes[sink.id] = (sink, authenticated, entry[2])
        entry[2][quote.key] = quote
        if ("otc", quote.symbol) in self.markets:
            sink.enqueue(self.quote_frame(quote, authenticated))

    def remove_quote(self, sink: Sink, key: tuple[Any, ...] | None) -> None:
        entry = self.quotes.get(sink.id)
        if entry is None:
            return
        if key is None:
            entry[2].clear()
        else:
            entry[2].pop(key, None)

    def _send_quotes(self, key: Key) -> None:
        for sink, authenticated, streams in list(self.quotes.values()):
            for quote in list(streams.values()):
                if quote.symbol == key[1]:
                    sink.enqueue(self.quote_frame(quote, authenticated))

    def quote_frame(self, quote: OtcQuote, authenticated: bool) -> str:
        topic = self.registry.render(self.registry.channel("otc", "otc_quote"))
        market = self.markets.get(("otc", quote.symbol))
        fields: dict[str, Any] = {
            "buyQuoteId": None,
            "sellQuoteId": None,
            "clOrderId": quote.cl_order_id,
            "buyQuantity": None,
            "buyUnitPrice": None,
            "buyTotalAmount": None,
            "sellQuantity": None,
            "sellUnitPrice": None,
            "sellTotalAmount": None,
            "status": None,
            "reason": None,
            "symbol": quote.symbol,
            "timestamp": self.now_ms(),
        }
        if market is None:
            fields["reason"] = f"Symbol {quote.symbol} is not supported"
            return frames.otc_quote(topic, fields)
        base, _, quote_ccy = quote.symbol.partition("-")
        if quote.currency not in (base, quote_ccy):
            fields["reason"] = f"Currency {quote.currency} is not part of {quote.symbol}"
            return frames.otc_quote(topic, fields)
        info = market.info
        for side, book_side, sign in (("buy", market.asks, 1), ("sell", market.bids, -1)):
            if quote.side not in (None, side):
                continue
            levels = book_side.top(len(book_side.prices))
            best = info.price_number(levels[0][0])
            qty_base = quote.quantity if quote.currency == base else quote.quantity / best
            unit = _vwap(levels, qty_base, info.price_number, info.size_number) * (1 + sign * 0.001)
            fields[f"{side}Quantity"] = round(qty_base, 8)
            fields[f"{side}UnitPrice"] = round(unit, 8)
            fields[f"{side}TotalAmount"] = round(unit * qty_base, 8)
            if authenticated:
                fields[f"{side}QuoteId"] = str(uuid.UUID(int=self._otc_rng.getrandbits(128), version=4))
        return frames.otc_quote(topic, fields)

    # -- market faults ---------------------------------------------------------------------

    def fault(self, kind: str, key: Key | None, *, topic: str | None = None,
              seq: int | None = None, **detail: Any) -> None:
        self.truth.record_fault(FaultRecord(kind, self.clock(), key[0] if key else None,
                                            key[1] if key else None, topic, seq, detail))

    def select(self, product: str | None, symbol: str | None) -> list[Key]:
        keys = [k for k in self.markets if (product is None or k[0] == product)
                and (symbol is None or k[1] == symbol)]
        return [k for k in keys if k[0] != "otc"]

    def _chains(self, key: Key, grouping: int | None) -> list[ChainKey]:
        return [(*key, g) for g in self.views[key] if grouping is None or g == grouping]

    def inject_gap(self, keys: list[Key], count: int, grouping: int | None) -> None:
        for key in keys:
            for chain in self._chains(key, grouping if grouping is not None else 0):
                self.gap_pending[chain] = self.gap_pending.get(chain, 0) + count

    def inject_dup(self, keys: list[Key], grouping: int | None) -> None:
        for key in keys:
            for chain in self._chains(key, grouping):
                delta = self.last_delta.get(chain)
                if delta is not None:
                    self.fault("dup", key, seq=delta.seq, grouping=chain[2])
                    self._fan_book(chain, delta, self.now_ms(), "delta")

    def inject_crossed(self, keys: list[Key], grouping: int | None) -> None:
        for key in keys:
            for chain in self._chains(key, grouping if grouping is not None else 0):
                view = self.views[key][chain[2]]
                _, ask = view.best()
                if ask is None:
                    continue
                view.seq += 1
                ts = self.now_ms()
                # The crossing level exists only on the wire: the true book is unchanged.
                self.truth.record_delta(key[0], key[1], chain[2], Delta(view.seq, (), ()), ts)
                wire = Delta(view.seq, ((ask[0] + 1, max(1, ask[1])),), ())
                self.last_delta[chain] = Delta(view.seq, (), ())
                self.fault("crossed", key, seq=view.seq, grouping=chain[2],
                           bid=self.markets[key].info.price_str(ask[0] + 1))
                self._fan_book(chain, wire, ts, "delta")

    def inject_rename(self, keys: list[Key], seconds: float | None, off: bool) -> None:
        for key in keys:
            if key[0] != "futures":
                continue
            if off:
                self.renamed.pop(key, None)
                continue
            alias = legacy_alias(key[1])
            if alias is None:
                continue
            until = None if seconds is None else self.clock() + seconds
            self.renamed[key] = _Renamed(alias, until)
            self.fault("rename", key, alias=alias, seconds=seconds)

    def book_topics_of(self, sink_id: int) -> list[tuple[Key, TopicRef]]:
        out = []
        for chain, subs in self.book_subs.items():
            for (sid, _), (_, ref) in subs.items():
                if sid == sink_id:
                    out.append(((chain[0], chain[1]), ref))
        return out


def _vwap(levels: list[tuple[int, int]], qty: float, price: Callable[[int], float],
          size: Callable[[int], float | int]) -> float:
    """Volume-weighted price to fill ``qty`` base units through ``levels`` (best first)."""
    left, cost = qty, 0.0
    for p, s in levels:
        take = min(left, float(size(s)))
        cost += take * price(p)
        left -= take
        if left <= 0:
            return cost / qty
    # Beyond the book: price the rest at the worst level.
    cost += left * price(levels[-1][0])
    return cost / qty


__all__ = ["ASK", "BID", "Exchange", "Sink"]
