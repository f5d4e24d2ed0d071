"""Typed records the decoder produces, one per incoming frame (pure data, no behaviour).

Prices and amounts are exact floats (see :mod:`collector.protocol.numbers`); timestamps are
``int`` microseconds since the epoch (BTSE ms x 1000); ``local_ts`` is the receive time in µs.
Symbols are canonical (:mod:`collector.protocol.symbols`); ``wire_symbol`` keeps the spelling
BTSE sent.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

Level = tuple[float, float]


class BookUpdate(msgspec.Struct, gc=False):
    """An ``update:<symbol>_<grouping>`` frame: a snapshot (book reset) or a delta."""

    product: str
    topic: str
    symbol: str
    wire_symbol: str
    grouping: int
    is_snapshot: bool
    bids: Sequence[Level]
    asks: Sequence[Level]
    seq: int
    prev_seq: int
    timestamp_us: int
    local_ts: int


class L1Update(msgspec.Struct, gc=False):
    """A ``snapshotL1:<symbol>`` frame: best bid and best ask, no sequence number."""

    product: str
    topic: str
    symbol: str
    wire_symbol: str
    bid: Level | None
    ask: Level | None
    timestamp_us: int
    local_ts: int


class Trade(msgspec.Struct, gc=False):
    """One public trade; ``side`` is the taker side, lower case."""

    symbol: str
    wire_symbol: str
    side: str
    price: float
    amount: float
    trade_id: str
    trade_seq: int | None  # the tradeId as a number, when it is one (informational: BTSE ids are not monotonic, de-duplication goes by time, see normalizer.TradeMemory)
    timestamp_us: int


class Trades(msgspec.Struct, gc=False):
    """A ``tradeHistoryApi*`` frame: a batch of trades (routed by each trade's symbol)."""

    product: str
    topic: str
    trades: list[Trade]
    local_ts: int


class OtcQuote(msgspec.Struct, gc=False):
    """An OTC ``quote`` message (``/ws/otc``)."""

    symbol: str | None
    cl_order_id: str | None
    buy_quote_id: str | None
    sell_quote_id: str | None
    buy_quantity: float | None
    buy_unit_price: float | None
    buy_total_amount: float | None
    sell_quantity: float | None
    sell_unit_price: float | None
    sell_total_amount: float | None
    status: str | None
    reason: str | None
    timestamp_us: int | None
    local_ts: int


class Ack(msgspec.Struct, gc=False):
    """``{"event": "subscribe"|"unsubscribe", "channel": [topics that succeeded]}``."""

    event: str
    topics: list[str]
    local_ts: int


class LoginAck(msgspec.Struct, gc=False):
    """``{"event": "login", "success": bool}`` (optional ``code``/``msg`` on failure)."""

    success: bool
    code: int | None
    message: str | None
    local_ts: int


class ErrorEntry(msgspec.Struct, gc=False):
    topic: str | None
    code: int | None  # numeric code (new format); None in the pre-2023 format
    message: str  # message (new format) or errorCode string (old format)


class ExchangeErrorFrame(msgspec.Struct, gc=False):
    """``{"severity": "ERROR", "errors": [...]}`` (or the pre-June-2023 ``"error"`` list)."""

    severity: str
    entries: list[ErrorEntry]
    local_ts: int


class PongFrame(msgspec.Struct, gc=False):
    """The bare text ``pong``."""

    local_ts: int


class PrivateMessage(msgspec.Struct, gc=False):
    """A frame of a private channel (notifications, fills, positions): counted, not stored."""

    product: str
    kind: str
    topic: str
    local_ts: int


class DecodeFailure(msgspec.Struct, gc=False):
    """A frame that could not be decoded: never dropped silently, kept with its raw text."""

    product: str
    reason: str
    raw: str
    topic: str | None
    local_ts: int


class SpecDrift(msgspec.Struct, gc=False):
    """A sampled frame that decoded but does not match its channel's payload schema."""

    product: str
    kind: str
    topic: str
    message: str
    path: str
    raw: str
    local_ts: int


Record = (
    BookUpdate
    | L1Update
    | Trades
    | OtcQuote
    | Ack
    | LoginAck
    | ExchangeErrorFrame
    | PongFrame
    | PrivateMessage
    | DecodeFailure
)
