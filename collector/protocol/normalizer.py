"""The sans-I/O heart of the collector: frames in, rows and commands out.

``Normalizer.feed(conn_id, server_name, data, local_ts_us)`` decodes one frame
(:class:`Decoder`), applies books (:class:`OrderBook`), de-duplicates trades, appends rows to
``self.buffers`` (:class:`TableBuffers`) and returns the :mod:`commands` the feed must act on.
Every inconsistency becomes an ``events`` row. Time only comes from the frames' ``local_ts``
(snapshot scheduling included): there is no clock here.

Rows written:

- ``book_changes``: a snapshot writes ``is_snapshot`` rows (the whole rebuilt book); a delta
  applied while LIVE writes one row per level. After a gap or a crossed book nothing is written
  until the next snapshot (the crossing delta itself is not written either), so a stored delta
  always continues the snapshot before it.
- ``quotes``: ``source=book`` each time best bid/ask (price or amount) changes, and after each
  sync; ``source=l1`` for every ``snapshotL1`` frame.
- ``book_snapshots``: top ``snapshot_depth`` levels right after each sync and then every
  ``snapshot_interval_s`` (aligned to multiples of the interval in local time).
- ``trades``: de-duplicated by (product, symbol, tradeId) with bounded memory: ids of the recent
  trades, exchange time beyond them (BTSE's tradeId is not monotonic; :class:`TradeMemory`).
- ``otc_quotes``: one per quote message, joined with the quote request it answers.
- ``events``: synced, gap, duplicate, crossed, resync, disconnected, subscribe_sent, subscribed,
  unsubscribed, auth, error, decode_error, spec_drift, otc_unmatched.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

from collector.protocol import native
from collector.protocol.book import (
    APPLIED_TOP,
    CROSSED,
    DUPLICATE,
    GAP,
    LIVE,
    SKIPPED,
    OrderBook,
    book_class,
)
from collector.protocol.commands import (
    Acknowledged,
    AuthResult,
    Command,
    ExchangeErrorSeen,
    Pong,
    Resubscribe,
)
from collector.protocol.decode import BOOK_PREFIXES, Decoder, RegistryLike
from collector.protocol.records import (
    Ack,
    BookUpdate,
    DecodeFailure,
    ExchangeErrorFrame,
    L1Update,
    LoginAck,
    OtcQuote,
    PongFrame,
    PrivateMessage,
    Record,
    Trades,
)
from collector.protocol.rows import SNAPSHOT_DEPTH, Levels, TableBuffers, book_quote_row
from collector.protocol.symbols import canonical_symbol


class _LazyLog:
    """structlog, imported on the first lifecycle event: ``import structlog`` pulls in asyncio,
    and the protocol core must stay importable without it (offline replay, the purity test)."""

    def __getattr__(self, name: str) -> Any:
        import structlog

        return getattr(structlog.get_logger("collector.protocol"), name)


log = _LazyLog()

BookKey = tuple[str, str, int]
_TRADE_TIME = attrgetter("timestamp_us")
DETAIL_LIMIT = 500  # characters of raw text copied into an events row (raw table has it all)


def py_apply_delta_rows(
    book: OrderBook,
    bids: Levels,
    asks: Levels,
    seq: int,
    prev_seq: int,
    timestamp_us: int,
    local_ts: int,
    book_changes: Any,
    quotes: list[tuple[Any, ...]],
) -> int:
    """One delta applied to ``book``; when applied, its ``book_changes`` rows and, when the top
    of book changed, its ``quotes`` row (``source=book``). The pure-Python twin of the C
    speedups' ``apply_delta_rows`` (the normalizer's per-frame hot path)."""
    outcome = book.apply_delta(bids, asks, seq, prev_seq, timestamp_us)
    if outcome <= APPLIED_TOP:
        key = book.key
        book_changes.append(key, timestamp_us, local_ts, False, seq, prev_seq, bids, asks)
        if outcome == APPLIED_TOP:
            quotes.append(book_quote_row(key, timestamp_us, local_ts, book, seq))
    return outcome


class ServerLike(Protocol):
    @property
    def product(self) -> str: ...


class NormalizerRegistry(RegistryLike, Protocol):
    def server(self, name: str) -> ServerLike: ...


class TradeMemory:
    """Which trades of one (product, symbol) are already stored, in bounded memory.

    BTSE re-sends a batch of recent trades (tens, newest first) after every subscribe; each
    trade must be stored once, across reconnects and restarts. BTSE's ``tradeId`` is not
    monotonic over time (927002515 in Jul 2025, 929934907 in Oct 2025, 57971633 in Sep 2026:
    reference §3.3.1, §3.5), so ids are only ever compared for equality; order comes from the
    trades' exchange time:

    - ``recent``: the ids of the last ``capacity`` trades stored (numeric or not);
    - ``floor_us`` / ``floor_ids``: the newest exchange time among the trades stored but no
      longer in ``recent`` (evicted, or in the store at startup: :meth:`stored`), and the ids
      known stored at exactly that time.

    A trade is already seen when its id is in ``recent``, or its time is before ``floor_us``,
    or at ``floor_us`` with an id in ``floor_ids``. Every trade stored earlier satisfies one
    of these, so a re-sent batch is dropped, after a reconnect (ids in ``recent``) as after a
    restart (times at or before the newest stored trade). New trades are kept whatever their
    id: those BTSE made while the collector was down are newer than ``floor_us``; several
    trades in one millisecond are told apart by id at ``floor_us``.

    The one trade-off: a trade is judged by time only once it is older than the floor. While
    running, a late trade slightly older than the newest one (but newer than the ``capacity``
    trades before it) is kept, as it is a different id; right after a restart, a trade never
    stored but older than the newest stored trade is taken for a re-sent one and dropped
    (the store cannot tell them apart). A capacity far above BTSE's batch size keeps the
    time-only window far behind the live trades.
    """

    __slots__ = ("_order", "capacity", "duplicates", "floor_ids", "floor_us", "newest_us", "recent")

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError(f"trade memory capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.recent: set[str] = set()
        self._order: deque[tuple[str, int]] = deque()
        self.floor_us: int | None = None
        self.floor_ids: set[str] = set()
        self.newest_us: int | None = None  # the newest trade time stored or seeded
        self.duplicates = 0  # trades found already seen (all time)

    def seen(self, trade_id: str, timestamp_us: int) -> bool:
        """True if already stored; otherwise remembers it (to be stored) and returns False."""
        floor = self.floor_us
        if trade_id in self.recent or (
            floor is not None
            and timestamp_us <= floor
            and (timestamp_us < floor or trade_id in self.floor_ids)
        ):
            self.duplicates += 1
            return True
        self.recent.add(trade_id)
        order = self._order
        order.append((trade_id, timestamp_us))
        if self.newest_us is None or timestamp_us > self.newest_us:
            self.newest_us = timestamp_us
        if len(order) > self.capacity:
            old_id, old_us = order.popleft()
            self.recent.discard(old_id)
            self.stored(old_us, (old_id,))
        return False

    def stored(self, timestamp_us: int, trade_ids: Iterable[str]) -> None:
        """Trades at ``timestamp_us`` with these ids are stored (and need no ``recent`` slot):
        the floor moves up to that time, or gains these ids when already at it."""
        floor = self.floor_us
        if floor is None or timestamp_us > floor:
            self.floor_us = timestamp_us
            self.floor_ids = set(trade_ids)
        elif timestamp_us == floor:
            self.floor_ids.update(trade_ids)
        if self.newest_us is None or timestamp_us > self.newest_us:
            self.newest_us = timestamp_us


def quantity_in_quote_currency(symbol: str, currency: str) -> bool | None:
    """Whether an OTC request's ``quantity.currency`` is the quote currency of ``symbol``
    (``USD`` of ``BTC-USD``: True), its base currency (``BTC``: False) or neither (None)."""
    base, dash, quote = symbol.upper().rpartition("-")
    unit = currency.upper()
    if dash and unit == quote:
        return True
    if dash and unit == base:
        return False
    return None


@dataclass
class _OtcRequest:
    symbol: str
    quantity: float
    currency: str
    cl_order_id: str | None
    in_quote_currency: bool | None  # see quantity_in_quote_currency

    def answered_by(self, q: OtcQuote) -> bool:
        """True if quote message ``q`` is for this request's quantity (reference §4.2): a
        quantity in the base currency is ``buyQuantity``/``sellQuantity``, one in the quote
        currency is ``buyTotalAmount``/``sellTotalAmount`` (either side: one may be null)."""
        if self.in_quote_currency:
            values: tuple[float | None, ...] = (q.buy_total_amount, q.sell_total_amount)
        elif self.in_quote_currency is False:
            values = (q.buy_quantity, q.sell_quantity)
        else:  # a currency that is neither: any of the four
            values = (q.buy_quantity, q.sell_quantity, q.buy_total_amount, q.sell_total_amount)
        quantity = self.quantity
        return any(v is not None and math.isclose(v, quantity, rel_tol=1e-9) for v in values)


@dataclass
class NormalizerStats:
    frames: int = 0
    decode_failures: int = 0
    spec_drifts: int = 0
    private_messages: int = 0
    trade_duplicates: int = 0
    deltas_skipped: int = 0
    duplicates: int = 0
    gaps: int = 0
    crossed: int = 0
    syncs: int = 0
    exchange_errors: int = 0
    otc_unmatched: int = 0


class Normalizer:
    """Frames -> rows (``self.buffers``) + commands. One per processing stage; not thread-safe."""

    def __init__(
        self,
        registry: NormalizerRegistry,
        *,
        snapshot_interval_s: float = 60.0,
        snapshot_depth: int = SNAPSHOT_DEPTH,
        validate_sample_rate: float = 0.001,
        trade_memory: int = 4096,
        speedups: bool | None = None,
    ) -> None:
        if snapshot_interval_s <= 0:
            raise ValueError(f"snapshot_interval_s must be > 0, got {snapshot_interval_s}")
        if not 1 <= snapshot_depth <= SNAPSHOT_DEPTH:
            raise ValueError(f"snapshot_depth must be 1..{SNAPSHOT_DEPTH}, got {snapshot_depth}")
        if not 0.0 <= validate_sample_rate <= 1.0:
            raise ValueError(f"validate_sample_rate must be in [0, 1], got {validate_sample_rate}")
        if trade_memory < 1:
            raise ValueError(f"trade_memory must be >= 1, got {trade_memory}")
        self.registry = registry
        self.snapshot_interval_us = int(snapshot_interval_s * 1_000_000)
        self.snapshot_depth = snapshot_depth
        self.validate_every = round(1 / validate_sample_rate) if validate_sample_rate else 0
        self.trade_memory = trade_memory
        self.speedups = native.use_speedups(speedups)  # None: the C speedups if built
        self._book_class = book_class(self.speedups)
        self._apply_delta_rows = (
            native.speedups.apply_delta_rows
            if self.speedups and native.speedups is not None
            else py_apply_delta_rows
        )
        self.buffers = TableBuffers(speedups=self.speedups)
        self.books: dict[BookKey, OrderBook] = {}
        self.stats = NormalizerStats()
        self._servers: dict[str, tuple[Decoder, dict[str, tuple[str, OrderBook]]]] = {}
        self._trades: dict[tuple[str, str], TradeMemory] = {}
        self._otc: dict[str, list[_OtcRequest]] = {}

    # -- the hot path ---------------------------------------------------------------------

    def feed(
        self, conn_id: str, server_name: str, data: str | bytes, local_ts: int
    ) -> list[Command]:
        """Process one received frame; returns the commands for the feed (usually none)."""
        return self.feed_many(((conn_id, server_name, data, local_ts),))

    def feed_many(
        self,
        frames: Iterable[tuple[str, str, str | bytes, int]],
        failed: Callable[[tuple[str, str, str | bytes, int], Exception], None] | None = None,
    ) -> list[Command]:
        """:meth:`feed` for a run of frames ``(conn_id, server_name, data, local_ts)``, in
        order; returns the commands of all of them, in order. The processing stage's hot
        path: the per-frame lookups are done once per run. With ``failed``, an exception
        while processing one frame is handed to ``failed(frame, exc)`` and the run goes on;
        without it, it propagates."""
        out: list[Command] = []
        servers = self._servers
        apply_delta_rows = self._apply_delta_rows
        book_changes = self.buffers.book_changes
        quotes = self.buffers.quote_rows
        stats = self.stats
        n = 0
        for frame_in in frames:
            n += 1
            try:
                conn_id, server_name, data, local_ts = frame_in
                entry = servers.get(server_name)
                decoder, topic_books = entry if entry is not None else self._server(server_name)
                raw = data.encode() if isinstance(data, str) else data
                if raw.startswith(BOOK_PREFIXES):  # the hot path: no record object per delta
                    frame = decoder.book_frame(raw, local_ts)
                    if frame is not None:
                        if decoder.drifts:
                            self._drifts(decoder, conn_id)
                        d = frame.data
                        cached = topic_books.get(frame.topic)
                        if cached is not None and cached[0] == d.symbol and d.type == "delta":
                            book = cached[1]
                            book.conn_id = conn_id
                            outcome = apply_delta_rows(
                                book,
                                d.bids,
                                d.asks,
                                d.seqNum,
                                d.prevSeqNum,
                                d.timestamp * 1000,
                                local_ts,
                                book_changes,
                                quotes,
                            )
                            if outcome <= APPLIED_TOP:
                                if local_ts >= book.next_snapshot_us:
                                    self._book_snapshot(book, local_ts)
                                continue
                            rec = decoder.book_record(frame, local_ts)
                            out += self._book_problem(conn_id, book, rec, outcome)
                            continue
                        rec = decoder.book_record(frame, local_ts)
                        out += self._book(conn_id, rec)
                        topic_books[frame.topic] = (
                            d.symbol,
                            self.books[(rec.product, rec.symbol, rec.grouping)],
                        )
                        continue
                record = decoder.decode(data, local_ts)
                if decoder.drifts:
                    self._drifts(decoder, conn_id)
                if type(record) is BookUpdate:
                    out += self._book(conn_id, record)
                else:
                    out += self._other(conn_id, decoder.product, record)
            except Exception as exc:
                if failed is None:
                    stats.frames += n
                    raise
                failed(frame_in, exc)
        stats.frames += n
        return out

    def _book(self, conn_id: str, rec: BookUpdate) -> list[Command]:
        key = (rec.product, rec.symbol, rec.grouping)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = self._book_class(
                rec.product, rec.symbol, rec.grouping, rec.topic
            )
        book.conn_id = conn_id
        if rec.is_snapshot:
            if self._snapshot(conn_id, book, rec) == CROSSED:  # BTSE's rule: resubscribe
                return self._book_problem(conn_id, book, rec, CROSSED)
            return []
        outcome = book.apply_delta(rec.bids, rec.asks, rec.seq, rec.prev_seq, rec.timestamp_us)
        local_ts = rec.local_ts
        if outcome <= APPLIED_TOP:
            self.buffers.add_book_levels(
                rec.product,
                rec.symbol,
                rec.grouping,
                rec.timestamp_us,
                local_ts,
                False,
                rec.seq,
                rec.prev_seq,
                rec.bids,
                rec.asks,
            )
            if outcome == APPLIED_TOP:
                self._quote(book, rec)
            if local_ts >= book.next_snapshot_us:
                self._book_snapshot(book, local_ts)
            return []
        return self._book_problem(conn_id, book, rec, outcome)

    # -- books ----------------------------------------------------------------------------

    def _snapshot(self, conn_id: str, book: OrderBook, rec: BookUpdate) -> int:
        was = book.state
        skipped = book.skipped_since_sync
        outcome = book.apply_snapshot(rec.bids, rec.asks, rec.seq, rec.timestamp_us)
        book.topic = rec.topic
        self.stats.syncs += 1
        bids, asks = book.depth()
        buf = self.buffers
        buf.add_book_levels(
            rec.product,
            rec.symbol,
            rec.grouping,
            rec.timestamp_us,
            rec.local_ts,
            True,
            rec.seq,
            rec.prev_seq,
            bids,
            asks,
        )
        self._quote(book, rec)
        self._book_snapshot(book, rec.local_ts)
        buf.add_event(
            "synced",
            rec.local_ts,
            product=rec.product,
            symbol=rec.symbol,
            topic=rec.topic,
            connection=conn_id,
            received_seq=rec.seq,
            count=skipped,
            detail=f"snapshot of {len(bids)} bids / {len(asks)} asks, was {was.value}"
            + (f", {skipped} deltas skipped before it" if skipped else ""),
            timestamp=rec.timestamp_us,
        )
        if was is not LIVE:
            log.info(
                "book_synced",
                product=rec.product,
                symbol=rec.symbol,
                grouping=rec.grouping,
                seq=rec.seq,
                was=was.value,
            )
        return outcome

    def _quote(self, book: OrderBook, rec: BookUpdate) -> None:
        """A ``quotes`` row (source=book) with the book's current top."""
        bid, bid_amount, ask, ask_amount = book.top
        self.buffers.add_quote(
            rec.product,
            rec.symbol,
            rec.timestamp_us,
            rec.local_ts,
            ask_amount,
            ask,
            bid,
            bid_amount,
            "book",
            rec.grouping,
            rec.seq,
        )

    def _book_snapshot(self, book: OrderBook, local_ts: int) -> None:
        depth = self.snapshot_depth
        self.buffers.add_book_snapshot(
            book.product,
            book.symbol,
            book.timestamp_us,
            local_ts,
            book.top_bids(depth),
            book.top_asks(depth),
            book.grouping,
            book.last_seq,
        )
        interval = self.snapshot_interval_us
        book.next_snapshot_us = (local_ts // interval + 1) * interval

    def _book_problem(
        self, conn_id: str, book: OrderBook, rec: BookUpdate, outcome: int
    ) -> list[Command]:
        if outcome == SKIPPED:
            self.stats.deltas_skipped += 1
            return []  # counted; reported in the next 'synced' event
        common: dict[str, Any] = {
            "product": rec.product,
            "symbol": rec.symbol,
            "topic": rec.topic,
            "connection": conn_id,
            "timestamp": rec.timestamp_us,
        }
        buf = self.buffers
        if outcome == DUPLICATE:
            self.stats.duplicates += 1
            buf.add_event(
                "duplicate",
                rec.local_ts,
                expected_seq=book.expected_seq,
                received_seq=rec.seq,
                count=1,
                detail=f"seqNum {rec.seq} not after {book.expected_seq}: ignored",
                **common,
            )
            return []
        if outcome == GAP:
            self.stats.gaps += 1
            reason = "gap"
            buf.add_event(
                "gap",
                rec.local_ts,
                expected_seq=book.expected_seq,
                received_seq=book.received_seq,
                detail=f"prevSeqNum {book.received_seq} != last seqNum {book.expected_seq}",
                **common,
            )
        else:  # CROSSED
            assert outcome == CROSSED
            self.stats.crossed += 1
            reason = "crossed"
            bid, ask = book.best_bid(), book.best_ask()
            buf.add_event(
                "crossed",
                rec.local_ts,
                received_seq=rec.seq,
                detail=f"best bid {bid[0] if bid else None} >= best ask {ask[0] if ask else None} after "
                + ("snapshot" if rec.is_snapshot else "delta")
                + f" seqNum {rec.seq}",
                **common,
            )
        topic = book.topic or rec.topic
        buf.add_event(
            "resync",
            rec.local_ts,
            count=None,
            detail=f"resubscribe {topic} after {reason}",
            **common,
        )
        log.warning(
            "book_resync",
            reason=reason,
            product=rec.product,
            symbol=rec.symbol,
            topic=topic,
            conn=conn_id,
            expected=book.expected_seq,
            received=book.received_seq,
        )
        return [Resubscribe(conn_id, topic, reason)]

    def _book_key(self, product: str, topic: str) -> BookKey | None:
        matched = self.registry.match(product, topic)
        if matched is None or str(matched[0].kind) != "book":
            return None
        params = matched[1]
        symbol = params.get("symbol")
        if not symbol:
            return None
        grouping = params.get("grouping")
        return (product, canonical_symbol(symbol), int(grouping) if grouping else 0)

    def _product_of(self, conn_id: str, server_name: str | None) -> str | None:
        name = server_name or conn_id.split("#", 1)[0]
        try:
            return self.registry.server(name).product
        except Exception:  # unknown server name: nothing to reset by topic
            return None

    def _reset_books(
        self,
        conn_id: str,
        topics: tuple[str, ...],
        server_name: str | None,
        *,
        whole_connection: bool,
    ) -> None:
        """Books back to SYNCING: those of ``topics`` and, with ``whole_connection``, every
        book the connection was feeding."""
        keys: set[BookKey] = set()
        if whole_connection:
            keys.update(k for k, b in self.books.items() if b.conn_id == conn_id)
        product = self._product_of(conn_id, server_name)
        if product is not None:
            for topic in topics:
                key = self._book_key(product, topic)
                if key is not None:
                    keys.add(key)
        for key in sorted(keys):
            book = self.books.get(key)
            if book is None:
                book = self.books[key] = self._book_class(*key)
            book.reset()
            book.conn_id = conn_id

    def on_disconnect(
        self,
        conn_id: str,
        topics: tuple[str, ...] | list[str] = (),
        local_ts: int = 0,
        *,
        server_name: str | None = None,
        reason: str = "",
    ) -> None:
        """The connection dropped: its books go back to SYNCING; an event records it."""
        topics = tuple(topics)
        self._reset_books(conn_id, topics, server_name, whole_connection=True)
        self._otc.pop(conn_id, None)
        self.buffers.add_event(
            "disconnected",
            local_ts,
            connection=conn_id,
            product=self._product_of(conn_id, server_name),
            count=len(topics),
            detail=reason or None,
        )

    def on_subscribe_sent(
        self,
        conn_id: str,
        topics: tuple[str, ...] | list[str],
        local_ts: int = 0,
        *,
        server_name: str | None = None,
    ) -> None:
        """A subscribe for ``topics`` went out: the books of these topics (and only these:
        the other books of the connection keep flowing) wait for a fresh snapshot."""
        topics = tuple(topics)
        self._reset_books(conn_id, topics, server_name, whole_connection=False)
        product = self._product_of(conn_id, server_name)
        for topic in topics:
            self.buffers.add_event(
                "subscribe_sent", local_ts, connection=conn_id, product=product, topic=topic
            )

    # -- trades ---------------------------------------------------------------------------

    def seed_stored_trades(
        self, product: str, symbol: str, timestamp_us: int, trade_ids: Iterable[str]
    ) -> None:
        """At startup, from the store: its newest trade of (product, symbol) is at exchange
        time ``timestamp_us`` (µs) and the trades stored at that time have ``trade_ids``.
        Trades before that time, and these ids at it, count as already stored; everything
        newer is kept (see :class:`TradeMemory`)."""
        key = (product, canonical_symbol(symbol))
        memory = self._trades.get(key)
        if memory is None:
            memory = self._trades[key] = TradeMemory(self.trade_memory)
        memory.stored(timestamp_us, trade_ids)

    def trade_duplicates(self) -> dict[tuple[str, str], int]:
        """Trades found already stored, per (product, symbol) (all time)."""
        return {key: memory.duplicates for key, memory in self._trades.items()}

    def newest_trade_us(self, product: str, symbol: str) -> int | None:
        """The exchange time (µs) of the newest trade of (product, symbol) stored or seeded."""
        memory = self._trades.get((product, canonical_symbol(symbol)))
        return memory.newest_us if memory else None

    def _trades_rows(self, rec: Trades) -> None:
        """The new trades of one frame, in frame order. They are judged oldest first (BTSE's
        batches come newest first): a batch of more new trades than the memory holds then
        moves the time floor only past trades already judged."""
        memories = self._trades
        trades = rec.trades
        judged = sorted(trades, key=_TRADE_TIME) if len(trades) > 1 else trades
        seen: set[int] = set()
        for t in judged:
            key = (rec.product, t.symbol)
            memory = memories.get(key)
            if memory is None:
                memory = memories[key] = TradeMemory(self.trade_memory)
            if memory.seen(t.trade_id, t.timestamp_us):
                seen.add(id(t))
        if seen:
            self.stats.trade_duplicates += len(seen)
        buf = self.buffers
        for t in trades:
            if seen and id(t) in seen:
                continue
            buf.add_trade(
                rec.product,
                t.symbol,
                t.timestamp_us,
                rec.local_ts,
                t.trade_id,
                t.side,
                t.price,
                t.amount,
            )

    # -- OTC ------------------------------------------------------------------------------

    def on_otc_quote_sent(
        self,
        conn_id: str,
        symbol: str,
        quantity: float,
        currency: str,
        cl_order_id: str | None = None,
    ) -> None:
        """An OTC ``quote`` request went out; its quote messages are joined to it. The same
        (symbol, quantity, currency, clOrderId) sent again replaces the earlier request."""
        quantity = float(quantity)
        requests = self._otc.setdefault(conn_id, [])
        requests[:] = [
            r
            for r in requests
            if not (
                r.symbol == symbol
                and r.quantity == quantity
                and r.currency == currency
                and r.cl_order_id == cl_order_id
            )
        ]
        in_quote = quantity_in_quote_currency(symbol, currency)
        requests.append(_OtcRequest(symbol, quantity, currency, cl_order_id, in_quote))

    def on_otc_unsubscribe(
        self,
        conn_id: str,
        symbol: str | None = None,
        quantity: float | None = None,
        cl_order_id: str | None = None,
        currency: str | None = None,
    ) -> None:
        """``unsubscribe-quote`` (or ``-all`` when symbol is None) went out; ``quantity`` or
        ``currency`` None: any."""
        if symbol is None:
            self._otc.pop(conn_id, None)
            return
        requests = self._otc.get(conn_id, [])
        requests[:] = [
            r
            for r in requests
            if not (
                r.symbol == symbol
                and (quantity is None or r.quantity == quantity)
                and (currency is None or r.currency == currency)
                and r.cl_order_id == cl_order_id
            )
        ]

    def _otc_request(self, conn_id: str, q: OtcQuote) -> _OtcRequest | None:
        """The request quote message ``q`` answers: by its echoed ``clOrderId``; else the
        only request of its symbol (any symbol when the message has none); else the only
        one of them whose quantity the message quotes (:meth:`_OtcRequest.answered_by`).
        None when no single request fits."""
        requests = self._otc.get(conn_id, [])
        if q.cl_order_id:
            for r in requests:
                if r.cl_order_id == q.cl_order_id:
                    return r
        candidates = [r for r in requests if q.symbol is None or r.symbol == q.symbol]
        if len(candidates) > 1:
            by_qty = [r for r in candidates if r.answered_by(q)]
            candidates = by_qty or candidates
        return candidates[0] if len(candidates) == 1 else None

    def _otc_row(self, conn_id: str, q: OtcQuote) -> None:
        request = self._otc_request(conn_id, q)
        if request is None:
            self.stats.otc_unmatched += 1
            self.buffers.add_event(
                "otc_unmatched",
                q.local_ts,
                product="otc",
                symbol=q.symbol,
                topic="quote",
                connection=conn_id,
                detail="quote message matches no single quote request of this connection",
                timestamp=q.timestamp_us,
            )
            return
        self.buffers.add_otc_quote(
            (
                q.symbol or request.symbol,
                q.timestamp_us,
                q.local_ts,
                request.quantity,
                request.currency,
                q.cl_order_id if q.cl_order_id is not None else request.cl_order_id,
                q.buy_quote_id,
                q.sell_quote_id,
                q.buy_quantity,
                q.buy_unit_price,
                q.buy_total_amount,
                q.sell_quantity,
                q.sell_unit_price,
                q.sell_total_amount,
                q.status,
                q.reason,
            )
        )

    # -- everything else ------------------------------------------------------------------

    def _other(self, conn_id: str, product: str, rec: Record) -> list[Command]:
        buf = self.buffers
        kind = type(rec)
        if kind is Trades:
            assert isinstance(rec, Trades)
            self._trades_rows(rec)
            return []
        if kind is L1Update:
            assert isinstance(rec, L1Update)
            bid = rec.bid or (None, None)
            ask = rec.ask or (None, None)
            buf.add_quote(
                product,
                rec.symbol,
                rec.timestamp_us,
                rec.local_ts,
                ask[1],
                ask[0],
                bid[0],
                bid[1],
                "l1",
                None,
                None,
            )
            return []
        if kind is PongFrame:
            return [Pong(conn_id, rec.local_ts)]
        if kind is OtcQuote:
            assert isinstance(rec, OtcQuote)
            self._otc_row(conn_id, rec)
            return []
        if kind is Ack:
            assert isinstance(rec, Ack)
            event = "subscribed" if rec.event == "subscribe" else "unsubscribed"
            for topic in rec.topics:
                buf.add_event(event, rec.local_ts, product=product, topic=topic, connection=conn_id)
            if not rec.topics:
                buf.add_event(
                    event,
                    rec.local_ts,
                    product=product,
                    connection=conn_id,
                    count=0,
                    detail="ack with an empty channel list",
                )
            return [Acknowledged(conn_id, rec.event, tuple(rec.topics))]
        if kind is ExchangeErrorFrame:
            assert isinstance(rec, ExchangeErrorFrame)
            commands: list[Command] = []
            for e in rec.entries:
                self.stats.exchange_errors += 1
                detail = json.dumps({"code": e.code, "message": e.message}, ensure_ascii=False)
                buf.add_event(
                    "error",
                    rec.local_ts,
                    product=product,
                    topic=e.topic,
                    connection=conn_id,
                    detail=detail,
                )
                commands.append(ExchangeErrorSeen(conn_id, e.code, e.message, e.topic))
                log.warning(
                    "exchange_error", conn=conn_id, code=e.code, message=e.message, topic=e.topic
                )
            return commands
        if kind is LoginAck:
            assert isinstance(rec, LoginAck)
            detail = (
                "login ok" if rec.success else f"login refused (code={rec.code}, msg={rec.message})"
            )
            buf.add_event("auth", rec.local_ts, product=product, connection=conn_id, detail=detail)
            return [AuthResult(conn_id, rec.success, detail)]
        if kind is DecodeFailure:
            assert isinstance(rec, DecodeFailure)
            self.stats.decode_failures += 1
            buf.add_event(
                "decode_error",
                rec.local_ts,
                product=product,
                topic=rec.topic,
                connection=conn_id,
                count=1,
                detail=f"{rec.reason}: {rec.raw[:DETAIL_LIMIT]}",
            )
            return []
        if kind is PrivateMessage:
            self.stats.private_messages += 1
            return []
        raise TypeError(f"unhandled record type {kind.__name__}")  # pragma: no cover

    def _drifts(self, decoder: Decoder, conn_id: str) -> None:
        for d in decoder.take_drifts():
            self.stats.spec_drifts += 1
            self.buffers.add_event(
                "spec_drift",
                d.local_ts,
                product=d.product,
                topic=d.topic,
                connection=conn_id,
                detail=f"{d.kind} frame drifts from the spec at {d.path or '$'}: {d.message}; frame: {d.raw[:DETAIL_LIMIT]}",
            )

    def _server(self, server_name: str) -> tuple[Decoder, dict[str, tuple[str, OrderBook]]]:
        """The decoder of a server and its cache topic -> (wire symbol, book) (hot path)."""
        product = self.registry.server(server_name).product
        decoder = Decoder(self.registry, product, validate_every=self.validate_every)
        entry: tuple[Decoder, dict[str, tuple[str, OrderBook]]] = (decoder, {})
        self._servers[server_name] = entry
        return entry
