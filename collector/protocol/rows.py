"""Row buffers: the normalized tables accumulated column-wise, handed over as column batches.

``TableBuffers`` keeps, per table, what it needs to produce ``dict[str, list]`` column batches
keyed exactly by the column names of ``schemas/<table>.yaml`` (a test checks the names and
order against the YAML files). Timestamps are ``int`` µs since the epoch.

No dict (and no object) is built per row on the hot path:

- ``book_changes`` (the high-rate table) stores one small tuple per *frame* plus the level
  lists exactly as the decoder produced them; ``take`` expands the per-frame values with
  ``itertools.repeat`` and flattens the levels, in C loops.
- the other tables store one tuple per row; ``take`` transposes them with ``zip``.

``take(table)`` hands the batch over and resets that table's buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

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

_TUPLE_TABLES = ("quotes", "book_snapshots", "trades", "otc_quotes", "events")
_NONE_LEVEL = (None, None)
Levels = Sequence[tuple[float, float]]


def _expand(values: Sequence[Any], counts: Sequence[int]) -> list[Any]:
    return list(chain.from_iterable(map(repeat, values, counts)))


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


class TableBuffers:
    """Column buffers of every normalized table (not ``raw``: the pipeline writes that)."""

    __slots__ = ("_bc_frames", "_bc_levels", "_bc_rows", "_rows")

    def __init__(self) -> None:
        self._bc_frames: list[tuple[Any, ...]] = []
        self._bc_levels: list[Levels] = []
        self._bc_rows = 0
        self._rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in _TUPLE_TABLES}

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
        nb = len(bids)
        na = len(asks)
        self._bc_frames.append(
            (product, symbol, grouping, timestamp, local_ts, is_snapshot, seq, prev_seq, nb, na)
        )
        self._bc_levels.append(bids)
        self._bc_levels.append(asks)
        self._bc_rows += nb + na

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
            return self._bc_rows
        if table in self._rows:
            return len(self._rows[table])
        if table == "raw":
            return 0
        raise KeyError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")

    def take(self, table: str) -> dict[str, list[Any]]:
        """The buffered rows of ``table`` as columns (schema names and order); resets it."""
        if table == "book_changes":
            return self._take_book_changes()
        if table not in self._rows:
            if table == "raw":
                return {name: [] for name in RAW_COLUMNS}
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        rows = self._rows[table]
        self._rows[table] = []
        names = COLUMNS[table]
        if not rows:
            return {name: [] for name in names}
        columns = [list(col) for col in zip(*rows, strict=True)]
        result: dict[str, list[Any]] = {"exchange": [EXCHANGE] * len(rows)}
        result.update(zip(names[1:], columns, strict=True))
        return result

    def take_all(self) -> dict[str, dict[str, list[Any]]]:
        """Every table with buffered rows, as column batches; resets them."""
        return {t: self.take(t) for t in TABLES if t != "raw" and self.pending(t)}

    def _take_book_changes(self) -> dict[str, list[Any]]:
        frames = self._bc_frames
        levels = self._bc_levels
        total = self._bc_rows
        self._bc_frames = []
        self._bc_levels = []
        self._bc_rows = 0
        if not frames:
            return {name: [] for name in BOOK_CHANGES_COLUMNS}
        columns = list(zip(*frames, strict=True))
        nb, na = columns[8], columns[9]
        counts = [b + a for b, a in zip(nb, na, strict=True)]
        # row -> frame index, then every per-frame column is one C-level itemgetter call
        index = list(chain.from_iterable(map(repeat, range(len(frames)), counts)))
        rows_of = itemgetter(*index) if total > 1 else None

        def per_row(values: tuple[Any, ...]) -> list[Any]:
            if rows_of is None:
                return [values[index[0]]] if total else []
            return list(rows_of(values))

        side_counts = list(chain.from_iterable(zip(nb, na, strict=True)))
        flat = list(chain.from_iterable(chain.from_iterable(levels)))  # p0, a0, p1, a1, ...
        return {
            "exchange": [EXCHANGE] * total,
            "product": per_row(columns[0]),
            "symbol": per_row(columns[1]),
            "grouping": per_row(columns[2]),
            "timestamp": per_row(columns[3]),
            "local_timestamp": per_row(columns[4]),
            "is_snapshot": per_row(columns[5]),
            "side": _expand(("bid", "ask") * len(frames), side_counts),
            "price": flat[0::2],
            "amount": flat[1::2],
            "seq": per_row(columns[6]),
            "prev_seq": per_row(columns[7]),
        }
