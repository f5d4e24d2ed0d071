"""The pure protocol core: frames out, decoding in, order books, normalizer, row buffers.

Imports no asyncio, websockets or aiohttp (a test checks it in a subprocess), so it can be
tested exhaustively and reused offline (replay, backtests). See README "Protocol core".
"""

from __future__ import annotations

from collector.protocol.book import BookState, OrderBook
from collector.protocol.commands import (
    Acknowledged,
    AuthResult,
    Command,
    ExchangeErrorSeen,
    Pong,
    Resubscribe,
)
from collector.protocol.decode import Decoder
from collector.protocol.normalizer import Normalizer, NormalizerStats
from collector.protocol.rows import COLUMNS, TableBuffers

__all__ = [
    "COLUMNS",
    "Acknowledged",
    "AuthResult",
    "BookState",
    "Command",
    "Decoder",
    "ExchangeErrorSeen",
    "Normalizer",
    "NormalizerStats",
    "OrderBook",
    "Pong",
    "Resubscribe",
    "TableBuffers",
]
