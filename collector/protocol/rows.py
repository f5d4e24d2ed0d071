"""Row buffers: the normalized tables accumulated column-wise, handed over as column batches.

``TableBuffers`` keeps, per table, what it needs to produce column batches keyed exactly by
the column names of ``schemas/<table>.yaml`` (a test checks the names and order against the
YAML files). Timestamps are ``int`` µs since the epoch.

No dict (and no object) is built per row on the hot path:

- ``book_changes`` (the high-rate table) is a :class:`BookChanges` and is handed over as
  **pyarrow arrays** of the schema's types (timestamps int64 µs). The C speedups' one
  (:mod:`native`) keeps every row in one C array and hands over column buffers (no Python
  object per row at all); the pure-Python twin :class:`PyBookChanges` stores one small tuple
  per *frame* plus the prices and amounts in one flat float list, expanded to rows by a
  run-end-encoded array decoded in C (Arrow) at hand-over.
- the other tables store one tuple per row; ``take`` transposes them (one
  ``map(itemgetter)`` pass per column) into ``dict[str, list]``.

``take(table)`` hands the batch over and resets that table's buffer; :func:`as_lists` turns a
batch into plain lists. pyarrow is imported on the first hand-over.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, compress
from operator import add, itemgetter, sub
from typing import Any, Protocol

from collector.protocol import native

EXCHANGE = "btse"
SNAPSHOT_DEPTH = 25

BOOK_CHANGES_COLUMNS = (
    "exchange",
    "product",
    "symbol",
    "grouping",
    "timestamp",
    "local_timestamp",
    "is_snapshot",
    "side",
    "price",
    "amount",
    "seq",
    "prev_seq",
)
QUOTES_COLUMNS = (
    "exchange",
    "product",
    "symbol",
    "timestamp",
    "local_timestamp",
    "ask_amount",
    "ask_price",
    "bid_price",
    "bid_amount",
    "source",
    "grouping",
    "seq",
)
BOOK_SNAPSHOTS_COLUMNS = (
    "exchange",
    "product",
    "symbol",
    "timestamp",
    "local_timestamp",
    *(
        f"{side}[{i}].{field}"
        for i in range(SNAPSHOT_DEPTH)
        for side in ("asks", "bids")
        for field in ("price", "amount")
    ),
    "grouping",
    "seq",
)
TRADES_COLUMNS = (
    "exchange",
    "product",
    "symbol",
    "timestamp",
    "local_timestamp",
    "id",
    "side",
    "price",
    "amount",
)
OTC_QUOTES_COLUMNS = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "quantity",
    "currency",
    "cl_order_id",
    "buy_quote_id",
    "sell_quote_id",
    "buy_quantity",
    "buy_unit_price",
    "buy_total_amount",
    "sell_quantity",
    "sell_unit_price",
    "sell_total_amount",
    "status",
    "reason",
)
EVENTS_COLUMNS = (
    "exchange",
    "kind",
    "product",
    "symbol",
    "topic",
    "connection",
    "expected_seq",
    "received_seq",
    "count",
    "detail",
    "timestamp",
    "local_timestamp",
)
RAW_COLUMNS = ("local_timestamp", "server", "connection", "frame")

COLUMNS: dict[str, tuple[str, ...]] = {
    "book_changes": BOOK_CHANGES_COLUMNS,
    "quotes": QUOTES_COLUMNS,
    "book_snapshots": BOOK_SNAPSHOTS_COLUMNS,
    "trades": TRADES_COLUMNS,
    "otc_quotes": OTC_QUOTES_COLUMNS,
    "events": EVENTS_COLUMNS,
    "raw": RAW_COLUMNS,
}
TABLES = tuple(COLUMNS)


class _TopOfBook(Protocol):
    @property
    def top(self) -> tuple[float | None, float | None, float | None, float | None]: ...


_TUPLE_TABLES = ("quotes", "book_snapshots", "trades", "otc_quotes", "events")
_NONE_LEVEL = (None, None)
Levels = Sequence[tuple[float, float]]


def raw_columns(
    local_ts: Sequence[int], server: Sequence[str], connection: Sequence[str], frames: Sequence[str]
) -> dict[str, list[Any]]:
    """A ``raw`` table batch (the pipeline writes raw frames itself; this is a helper)."""
    if not len(local_ts) == len(server) == len(connection) == len(frames):
        raise ValueError("raw_columns: all columns must have the same length")
    return {
        "local_timestamp": list(local_ts),
        "server": list(server),
        "connection": list(connection),
        "frame": list(frames),
    }


class PyBookChanges:
    """The ``book_changes`` rows of one batch, pure Python (twin of the C ``BookChanges``)."""

    __slots__ = ("_frames", "_rows", "_values")

    def __init__(self) -> None:
        self._frames: list[tuple[Any, ...]] = []
        self._values: list[float] = []  # price, amount of every level of every frame
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def append(
        self,
        key: tuple[str, str, int],
        timestamp: int | None,
        local_ts: int,
        is_snapshot: bool,
        seq: int,
        prev_seq: int,
        bids: Levels,
        asks: Levels,
    ) -> None:
        """The rows of one frame: every bid level, then every ask level (one tuple per frame,
        the prices and amounts copied into one flat list)."""
        nb = len(bids)
        na = len(asks)
        self._frames.append((key, timestamp, local_ts, is_snapshot, seq, prev_seq, nb, na))
        extend = self._values.extend
        for level in bids:
            extend(level)
        for level in asks:
            extend(level)
        self._rows += nb + na

    def take(self) -> dict[str, Any]:
        """The batch as Arrow arrays (schema names and order); resets the buffer."""
        frames = self._frames
        values = self._values
        total = self._rows
        self._frames = []
        self._values = []
        self._rows = 0
        pa = _arrow()
        types = _book_changes_types()
        if not total:  # no frame, or only frames without levels
            return {name: pa.array([], types[name]) for name in BOOK_CHANGES_COLUMNS}
        pc = _compute()
        int32 = pa.int32()
        # one C-level pass per column (zip(*frames) was ~1/3 µs per frame on 30,000 frames)
        keys, stamps, local, snap, seq, prev, nb, na = (
            list(map(itemgetter(i), frames)) for i in range(8)
        )
        # row -> frame index: a run-end-encoded array decoded in C (no Python object per row)
        counts = list(map(add, nb, na))
        ends = list(accumulate(counts))
        if 0 in counts:  # runs must not be empty
            index = _decode_runs(
                pa, list(compress(ends, counts)), list(compress(range(len(frames)), counts))
            )
        else:
            index = _decode_runs(pa, ends, list(range(len(frames))))
        # a frame's rows are its bids then its asks: row r is a bid iff r < end - na
        row_number = pc.cumulative_sum(pa.repeat(pa.scalar(1, int32), total))  # r + 1
        bids_end = pa.array(list(map(sub, ends, na)), int32).take(index)
        side = pc.if_else(pc.less_equal(row_number, bids_end), *_side_scalars(pa))
        book_of = dict.fromkeys(keys)
        for i, key in enumerate(book_of):
            book_of[key] = i
        book_index = pa.array(list(map(book_of.__getitem__, keys)), int32).take(index)
        return {
            **_book_columns(pa, list(book_of), book_index, total),
            "timestamp": pa.array(stamps, types["timestamp"]).take(index),
            "local_timestamp": pa.array(local, types["local_timestamp"]).take(index),
            "is_snapshot": pa.array(snap, pa.bool_()).take(index),
            "side": side,
            "price": pa.array(values[0::2], pa.float64()),
            "amount": pa.array(values[1::2], pa.float64()),
            "seq": pa.array(seq, pa.int64()).take(index),
            "prev_seq": pa.array(prev, pa.int64()).take(index),
        }


def book_quote_row(
    key: tuple[str, str, int], timestamp: int | None, local_ts: int, book: _TopOfBook, seq: int
) -> tuple[Any, ...]:
    """The ``quotes`` row (``source=book``, as :meth:`TableBuffers.add_quote` stores it) of a
    book's current top."""
    bid, bid_amount, ask, ask_amount = book.top
    return (key[0], key[1], timestamp, local_ts, ask_amount, ask, bid, bid_amount, "book", key[2], seq)


def py_columns_of(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """The transpose of equally long row tuples: one list per column (pure-Python twin of the
    C speedups' ``columns_of``; one C-level pass per column, ~3x cheaper than ``zip(*rows)``)."""
    return [list(map(itemgetter(i), rows)) for i in range(width)]


_columns_of = native.speedups.columns_of if native.speedups is not None else py_columns_of


def _book_columns(pa: Any, books: list[tuple[str, str, int]], index: Any, total: int) -> dict[str, Any]:
    """exchange, product, symbol, grouping of every row from its book's index."""
    return {
        "exchange": pa.repeat(pa.scalar(EXCHANGE, pa.string()), total),
        "product": pa.array([b[0] for b in books], pa.string()).take(index),
        "symbol": pa.array([b[1] for b in books], pa.string()).take(index),
        "grouping": pa.array([b[2] for b in books], pa.int16()).take(index),
    }


def take_book_changes(buffer: Any) -> dict[str, Any]:
    """The batch of a :class:`PyBookChanges` or a C ``BookChanges`` as Arrow arrays (schema
    names and order); resets it."""
    if isinstance(buffer, PyBookChanges):
        return buffer.take()
    (n, books, stamps, stamps_valid, local, seq, prev, price, amount, book, snap, offsets,
     side) = buffer.take()
    pa = _arrow()
    types = _book_changes_types()

    def fixed(kind: Any, data: bytes, valid: bytes | None = None) -> Any:
        return pa.Array.from_buffers(
            kind, n, [None if valid is None else pa.py_buffer(valid), pa.py_buffer(data)]
        )

    book_index = fixed(pa.int32(), book)
    columns = _book_columns(pa, books, book_index, n) if n else {
        name: pa.array([], types[name]) for name in ("exchange", "product", "symbol", "grouping")
    }
    return {
        **columns,
        "timestamp": fixed(types["timestamp"], stamps, stamps_valid),
        "local_timestamp": fixed(types["local_timestamp"], local),
        "is_snapshot": fixed(pa.bool_(), snap),
        "side": pa.Array.from_buffers(
            pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(side)]
        ),
        "price": fixed(pa.float64(), price),
        "amount": fixed(pa.float64(), amount),
        "seq": fixed(pa.int64(), seq),
        "prev_seq": fixed(pa.int64(), prev),
    }


def new_book_changes(speedups: bool | None = None) -> Any:
    """A book_changes buffer: the C one (``speedups`` True, or None and built) or Python."""
    if native.use_speedups(speedups):
        assert native.speedups is not None
        return native.speedups.BookChanges()
    return PyBookChanges()


class TableBuffers:
    """Column buffers of every normalized table (not ``raw``: the pipeline writes that)."""

    __slots__ = ("_rows", "book_changes", "speedups")

    def __init__(self, *, speedups: bool | None = None) -> None:
        self.speedups = native.use_speedups(speedups)
        self.book_changes = new_book_changes(self.speedups)  # stable: take() empties it
        # one list per table, stable too (take() empties it): the hot path may hold them
        self._rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in _TUPLE_TABLES}

    @property
    def quote_rows(self) -> list[tuple[Any, ...]]:
        """The ``quotes`` rows list (rows as in :meth:`add_quote`), for the hot path."""
        return self._rows["quotes"]

    # -- appending ------------------------------------------------------------------------

    def add_book_levels(
        self,
        product: str,
        symbol: str,
        grouping: int,
        timestamp: int | None,
        local_ts: int,
        is_snapshot: bool,
        seq: int,
        prev_seq: int,
        bids: Levels,
        asks: Levels,
    ) -> None:
        """``book_changes`` rows for one frame: every bid level, then every ask level."""
        self.book_changes.append(
            (product, symbol, grouping), timestamp, local_ts, is_snapshot, seq, prev_seq, bids, asks
        )

    def add_quote(
        self,
        product: str,
        symbol: str,
        timestamp: int | None,
        local_ts: int,
        ask_amount: float | None,
        ask_price: float | None,
        bid_price: float | None,
        bid_amount: float | None,
        source: str,
        grouping: int | None,
        seq: int | None,
    ) -> None:
        self._rows["quotes"].append(
            (
                product,
                symbol,
                timestamp,
                local_ts,
                ask_amount,
                ask_price,
                bid_price,
                bid_amount,
                source,
                grouping,
                seq,
            )
        )

    def add_book_snapshot(
        self,
        product: str,
        symbol: str,
        timestamp: int | None,
        local_ts: int,
        bids: Levels,
        asks: Levels,
        grouping: int,
        seq: int,
    ) -> None:
        """One ``book_snapshots`` row: ``bids``/``asks`` best first, at most 25 used."""
        values: list[Any] = [product, symbol, timestamp, local_ts]
        nb = len(bids)
        na = len(asks)
        for i in range(SNAPSHOT_DEPTH):
            values.extend(asks[i] if i < na else _NONE_LEVEL)
            values.extend(bids[i] if i < nb else _NONE_LEVEL)
        values.append(grouping)
        values.append(seq)
        self._rows["book_snapshots"].append(tuple(values))

    def add_trade(
        self,
        product: str,
        symbol: str,
        timestamp: int | None,
        local_ts: int,
        trade_id: str,
        side: str,
        price: float,
        amount: float,
    ) -> None:
        self._rows["trades"].append(
            (product, symbol, timestamp, local_ts, trade_id, side, price, amount)
        )

    def add_otc_quote(self, values: tuple[Any, ...]) -> None:
        """One ``otc_quotes`` row: the columns after ``exchange``, in schema order."""
        if len(values) != len(OTC_QUOTES_COLUMNS) - 1:
            raise ValueError(
                f"otc_quotes row needs {len(OTC_QUOTES_COLUMNS) - 1} values, got {len(values)}"
            )
        self._rows["otc_quotes"].append(values)

    def add_event(
        self,
        kind: str,
        local_ts: int,
        *,
        product: str | None = None,
        symbol: str | None = None,
        topic: str | None = None,
        connection: str | None = None,
        expected_seq: int | None = None,
        received_seq: int | None = None,
        count: int | None = None,
        detail: str | None = None,
        timestamp: int | None = None,
    ) -> None:
        self._rows["events"].append(
            (
                kind,
                product,
                symbol,
                topic,
                connection,
                expected_seq,
                received_seq,
                count,
                detail,
                timestamp,
                local_ts,
            )
        )

    # -- handing over ---------------------------------------------------------------------

    def pending(self, table: str) -> int:
        """Rows buffered for ``table``."""
        if table == "book_changes":
            return len(self.book_changes)
        if table in self._rows:
            return len(self._rows[table])
        if table == "raw":
            return 0
        raise KeyError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")

    def take(self, table: str) -> dict[str, list[Any]]:
        """The buffered rows of ``table`` as columns (schema names and order); resets it."""
        if table == "book_changes":
            return take_book_changes(self.book_changes)
        if table not in self._rows:
            if table == "raw":
                return {name: [] for name in RAW_COLUMNS}
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        buffered = self._rows[table]
        rows = buffered[:]
        buffered.clear()
        names = COLUMNS[table]
        if not rows:
            return {name: [] for name in names}
        width = len(names) - 1
        if len(set(map(len, rows))) != 1 or len(rows[0]) != width:
            raise ValueError(f"{table}: rows of {sorted(set(map(len, rows)))} values, "
                             f"expected {width} (a bug in the row builder)")
        result: dict[str, list[Any]] = {"exchange": [EXCHANGE] * len(rows)}
        result.update(zip(names[1:], _columns_of(rows, width), strict=True))
        return result

    def take_all(self) -> dict[str, dict[str, list[Any]]]:
        """Every table with buffered rows, as column batches; resets them."""
        return {t: self.take(t) for t in TABLES if t != "raw" and self.pending(t)}


_ARROW: list[Any] = []  # pyarrow, pyarrow.compute once imported
_SIDES: list[Any] = []


def _side_scalars(pa: Any) -> list[Any]:
    """Arrow scalars 'bid', 'ask' (a Python str argument costs a failing pandas import)."""
    if not _SIDES:
        _SIDES.extend((pa.scalar("bid", pa.string()), pa.scalar("ask", pa.string())))
    return _SIDES


def _arrow() -> Any:
    """pyarrow, imported on the first hand-over (importing the core stays light)."""
    if not _ARROW:
        import pyarrow

        _ARROW.append(pyarrow)
    return _ARROW[0]


_BC_TYPES: dict[str, Any] = {}


def _book_changes_types() -> dict[str, Any]:
    """Arrow types of ``book_changes`` (as schemas/book_changes.yaml; a test compares)."""
    if not _BC_TYPES:
        pa = _arrow()
        ts = pa.int64()  # int µs since the epoch, as every column batch (Store casts)
        _BC_TYPES.update(
            exchange=pa.string(),
            product=pa.string(),
            symbol=pa.string(),
            grouping=pa.int16(),
            timestamp=ts,
            local_timestamp=ts,
            is_snapshot=pa.bool_(),
            side=pa.string(),
            price=pa.float64(),
            amount=pa.float64(),
            seq=pa.int64(),
            prev_seq=pa.int64(),
        )
    return _BC_TYPES


def _compute() -> Any:
    if len(_ARROW) < 2:
        import pyarrow.compute

        _ARROW.append(pyarrow.compute)
    return _ARROW[1]


def _decode_runs(pa: Any, ends: list[int], values: list[int]) -> Any:
    """int32 ``values[i]`` repeated up to row ``ends[i]`` (exclusive), decoded in C."""
    int32 = pa.int32()
    # from_buffers: RunEndEncodedArray.from_arrays looks for pandas/dateutil (a failing
    # import, i.e. a file-system search) on every call
    runs = pa.Array.from_buffers(
        pa.run_end_encoded(int32, int32),
        ends[-1],
        [None],
        children=[pa.array(ends, int32), pa.array(values, int32)],
    )
    return _compute().run_end_decode(runs)


def as_lists(columns: dict[str, Any]) -> dict[str, list[Any]]:
    """A column batch with every column as a Python list (Arrow columns converted)."""
    return {k: v if isinstance(v, list) else v.to_pylist() for k, v in columns.items()}
