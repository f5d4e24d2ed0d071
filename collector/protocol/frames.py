"""Client frames: what the collector sends to BTSE (pure; returns the text to send).

- ``subscribe(topics)`` / ``unsubscribe(topics)``: ``{"op": ..., "args": [topics]}``; several
  topics per frame (BTSE acks them in one ``{"event", "channel"}`` frame).
- ``PING``: the bare text ``ping`` (BTSE answers the bare text ``pong``).
- ``auth_key_expires(api_key, secret, path, nonce_ms)``: the ``authKeyExpires`` login with an
  HMAC-SHA384 signature (:mod:`collector.protocol.auth`); the nonce travels as a JSON string.
- OTC: ``otc_quote`` / ``otc_unsubscribe_quote`` / ``otc_unsubscribe_quote_all`` (the OTC server
  does not use ``subscribe``: a subscribe there is "acked" with an empty channel list and
  yields nothing, reference §4.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec

from collector.protocol.auth import sign
from collector.protocol.numbers import exact_float

PING = "ping"
PONG = "pong"

_encoder = msgspec.json.Encoder(decimal_format="number")


def _topics(topics: Iterable[str], op: str) -> list[str]:
    result = list(topics)
    if not result:
        raise ValueError(f"{op}: at least one topic is required")
    for topic in result:
        if not isinstance(topic, str) or not topic or topic != topic.strip():
            raise ValueError(f"{op}: invalid topic {topic!r}")
    return result


def _encode(obj: dict[str, Any]) -> str:
    return _encoder.encode(obj).decode()


def subscribe(topics: Iterable[str]) -> str:
    """``{"op":"subscribe","args":[...]}`` for one or more topics."""
    return _encode({"op": "subscribe", "args": _topics(topics, "subscribe")})


def unsubscribe(topics: Iterable[str]) -> str:
    """``{"op":"unsubscribe","args":[...]}`` for one or more topics."""
    return _encode({"op": "unsubscribe", "args": _topics(topics, "unsubscribe")})


def auth_key_expires(api_key: str, secret: str, path: str, nonce_ms: int | str) -> str:
    """The ``authKeyExpires`` frame signed for ``path`` (``/ws/spot``, ``/ws/futures``, ``/ws/otc``)."""
    if not api_key or not secret:
        raise ValueError("authKeyExpires needs a non-empty api key and secret")
    nonce = str(nonce_ms)
    if not nonce.isdigit():
        raise ValueError(f"nonce must be UTC milliseconds, got {nonce_ms!r}")
    return _encode({"op": "authKeyExpires", "args": [api_key, nonce, sign(secret, path, nonce)]})


def _quantity(quantity: Decimal | str | int | float, currency: str) -> dict[str, Any]:
    if not currency:
        raise ValueError("OTC quote needs a quantity currency")
    exact_float(quantity)  # validates: finite, >= 0, at most 15 significant digits
    value = quantity if isinstance(quantity, Decimal) else Decimal(str(quantity))
    if value <= 0:
        raise ValueError(f"OTC quote quantity must be positive, got {quantity!r}")
    return {"quantity": value, "currency": currency}


def otc_quote(
    symbol: str,
    quantity: Decimal | str | int | float,
    currency: str,
    *,
    side: str | None = None,
    cl_order_id: str | None = None,
) -> str:
    """Start an OTC quote stream (``op: quote``); ``side`` None quotes both sides."""
    if not symbol:
        raise ValueError("OTC quote needs a symbol")
    if side is not None and side not in ("buy", "sell"):
        raise ValueError(f"OTC side is 'buy' or 'sell' (lower case), got {side!r}")
    frame: dict[str, Any] = {"op": "quote", "symbol": symbol}
    if side is not None:
        frame["side"] = side
    if cl_order_id is not None:
        frame["clOrderId"] = cl_order_id
    frame["quantity"] = _quantity(quantity, currency)
    return _encode(frame)


def otc_unsubscribe_quote(
    symbol: str,
    quantity: Decimal | str | int | float,
    currency: str,
    *,
    cl_order_id: str | None = None,
) -> str:
    """Stop one OTC quote stream: repeat the symbol, quantity and clOrderId of its ``quote``."""
    if not symbol:
        raise ValueError("OTC unsubscribe-quote needs a symbol")
    frame: dict[str, Any] = {"op": "unsubscribe-quote", "symbol": symbol}
    if cl_order_id is not None:
        frame["clOrderId"] = cl_order_id
    frame["quantity"] = _quantity(quantity, currency)
    return _encode(frame)


def otc_unsubscribe_quote_all() -> str:
    """Stop every OTC quote stream of the connection."""
    return _encode({"op": "unsubscribe-quote-all"})
