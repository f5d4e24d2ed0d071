"""Server frames exactly as BTSE writes them (pure): key order, number formats, level order.

* book frames (``update:``): keys ``bids, asks, seqNum, prevSeqNum, type, symbol, timestamp``;
  prices and sizes are strings with trailing zeros kept; a snapshot lists bids descending and
  asks descending too (worst first, best ask last) and carries ``prevSeqNum = seqNum - 1``;
* L1 frames (``snapshotL1:``): one level a side, ``type: snapshotL1``, no seqNum;
* trade frames: JSON numbers, keys ``price, size, side, symbol, tradeId, timestamp``;
* acks, ``login`` replies and OSS error frames with BTSE's codes and messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from collector.simulator.market import SymbolInfo

# OSS error codes and their messages (reference §2.5); 1001's message has no trailing period
# on the wire.
ERROR_MESSAGES: dict[int, str] = {
    1000: "Market pair provided is currently not supported.",
    1001: "Operation provided is currently not supported",
    1002: "Invalid request. Please check again your request and provide all information required.",
    1005: "Topic provided does not exist.",
    1007: "User message buffer is full.",
    1008: "Reached maximum failed attempts, closing the session.",
}

Levels = Sequence[tuple[int, int]]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _levels(info: SymbolInfo, levels: Iterable[tuple[int, int]]) -> str:
    price, size = info.price_str, info.size_str
    return ",".join(f'["{price(p)}","{size(s)}"]' for p, s in levels)


def book_frame(topic: str, wire_symbol: str, info: SymbolInfo, kind: str, seq: int,
               bids: Levels, asks: Levels, ts: int) -> str:
    """An ``update:`` frame; ``bids``/``asks`` are sent in the order given."""
    return (
        f'{{"topic":{_dumps(topic)},"data":{{"bids":[{_levels(info, bids)}],'
        f'"asks":[{_levels(info, asks)}],"seqNum":{seq},"prevSeqNum":{seq - 1},'
        f'"type":"{kind}","symbol":{_dumps(wire_symbol)},"timestamp":{ts}}}}}'
    )


def snapshot_frame(topic: str, wire_symbol: str, info: SymbolInfo, seq: int,
                   bids_best_first: Levels, asks_best_first: Levels, ts: int) -> str:
    """A snapshot: bids descending, asks descending (best ask last), as on the wire."""
    return book_frame(topic, wire_symbol, info, "snapshot", seq, bids_best_first,
                      list(reversed(asks_best_first)), ts)


def l1_frame(topic: str, wire_symbol: str, info: SymbolInfo, bid: tuple[int, int] | None,
             ask: tuple[int, int] | None, ts: int) -> str:
    return (
        f'{{"topic":{_dumps(topic)},"data":{{"bids":[{_levels(info, [bid] if bid else [])}],'
        f'"asks":[{_levels(info, [ask] if ask else [])}],"type":"snapshotL1",'
        f'"symbol":{_dumps(wire_symbol)},"timestamp":{ts}}}}}'
    )


def trade_entry(info: SymbolInfo, wire_symbol: str, side: str, price_ticks: int,
                size_lots: int, trade_id: int, ts: int) -> str:
    price = repr(info.price_number(price_ticks))
    size = info.size_number(size_lots)
    size_text = str(size) if isinstance(size, int) else repr(size)
    return (
        f'{{"price":{price},"size":{size_text},"side":"{side}","symbol":{_dumps(wire_symbol)},'
        f'"tradeId":{trade_id},"timestamp":{ts}}}'
    )


def trades_frame(topic: str, entries: Iterable[str]) -> str:
    return f'{{"topic":{_dumps(topic)},"data":[{",".join(entries)}]}}'


def ack(event: str, channels: Sequence[str]) -> str:
    return _dumps({"event": event, "channel": list(channels)})


def login(success: bool) -> str:
    return _dumps({"event": "login", "success": success})


def error_frame(errors: Sequence[tuple[str | None, int]]) -> str:
    """``{"severity":"ERROR","errors":[{"arg":...,"error":{"code":..,"message":..}}]}``."""
    entries: list[dict[str, Any]] = []
    for arg, code in errors:
        entry: dict[str, Any] = {} if arg is None else {"arg": arg}
        entry["error"] = {"code": code, "message": ERROR_MESSAGES[code]}
        entries.append(entry)
    return _dumps({"severity": "ERROR", "errors": entries})


def otc_quote(topic: str, fields: dict[str, Any]) -> str:
    return _dumps({"topic": topic, **fields})
