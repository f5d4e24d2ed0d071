"""What a BTSE server makes of one inbound text frame (pure: no sockets, no asyncio).

:func:`parse_request` turns the text into a request; :func:`resolve_topic` decides, with the
spec registry, whether a server serves a topic string and which market chain it means;
:func:`verify_auth` checks ``authKeyExpires``/``login`` signatures
(``hex(HMAC_SHA384(secret, path + nonce))``, reference §2.4).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.simulator.book import MAX_GROUPING
from collector.simulator.market import LEGACY_ALIASES
from collector.specs import Server
from collector.specs import SpecRegistry as Registry

# ---------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Subscribe:
    op: str  # "subscribe" | "unsubscribe"
    args: tuple[str, ...]


@dataclass(frozen=True)
class Auth:
    op: str  # "authKeyExpires" | "login"
    key: str
    nonce: str
    signature: str


@dataclass(frozen=True)
class OtcQuote:
    symbol: str
    side: str | None
    cl_order_id: str | None
    quantity: float
    currency: str

    @property
    def key(self) -> tuple[str, str | None, float, str]:
        return (self.symbol, self.cl_order_id or None, self.quantity, self.currency)


@dataclass(frozen=True)
class OtcUnsubscribe:
    key: tuple[str, str | None, float, str]


@dataclass(frozen=True)
class OtcUnsubscribeAll:
    pass


@dataclass(frozen=True)
class NoReply:
    """A request BTSE answers with silence (e.g. ``{"op":"subscribe"}`` without ``args``)."""

    reason: str


@dataclass(frozen=True)
class Invalid:
    """Not JSON or not a request object: OSS answers error 1002."""

    reason: str


@dataclass(frozen=True)
class UnknownOp:
    op: str


@dataclass(frozen=True)
class BadQuote:
    reason: str
    cl_order_id: str | None


Request = (Ping | Subscribe | Auth | OtcQuote | OtcUnsubscribe | OtcUnsubscribeAll | NoReply
           | Invalid | UnknownOp | BadQuote)


def parse_request(text: str, *, otc: bool = False) -> Request:
    """Parse one inbound frame. ``otc`` enables the OTC quote ops."""
    if text == "ping":
        return Ping()
    try:
        obj = json.loads(text)
    except ValueError:
        return Invalid("not JSON")
    if not isinstance(obj, dict):
        return Invalid("not a JSON object")
    op = obj.get("op")
    if not isinstance(op, str):
        return Invalid("no op")
    if op in ("subscribe", "unsubscribe"):
        args = obj.get("args")
        if args is None:
            return NoReply(f"{op} without args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return Invalid("args must be a list of topic strings")
        return Subscribe(op, tuple(args))
    if op in ("authKeyExpires", "login"):
        args = obj.get("args")
        if not isinstance(args, list) or len(args) != 3:
            return Auth(op, "", "", "")
        key, nonce, signature = (str(a) for a in args)
        return Auth(op, key, nonce, signature)
    if otc and op == "quote":
        return _parse_quote(obj)
    if otc and op == "unsubscribe-quote":
        quote = _parse_quote(obj)
        if isinstance(quote, BadQuote):
            return NoReply(quote.reason)
        return OtcUnsubscribe(quote.key)
    if otc and op == "unsubscribe-quote-all":
        return OtcUnsubscribeAll()
    return UnknownOp(op)


def _parse_quote(obj: Mapping[str, Any]) -> OtcQuote | BadQuote:
    cl = obj.get("clOrderId")
    cl_order_id = cl if isinstance(cl, str) else None
    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        return BadQuote("symbol is required", cl_order_id)
    side = obj.get("side")
    if side in ("", None):
        side = None
    elif side not in ("buy", "sell"):  # lower case, case-sensitive (reference §4.1)
        return BadQuote(f"invalid side {side!r}: use buy or sell", cl_order_id)
    qty = obj.get("quantity")
    if not isinstance(qty, dict):
        return BadQuote("quantity is required", cl_order_id)
    amount, currency = qty.get("quantity"), qty.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        return BadQuote("quantity.quantity must be a positive number", cl_order_id)
    if not isinstance(currency, str) or not currency:
        return BadQuote("quantity.currency is required", cl_order_id)
    return OtcQuote(symbol, side, cl_order_id, float(amount), currency)


# -------------------------------------------------------------------------------------- auth


def sign(secret: str, path: str, nonce: str) -> str:
    """``hex(HMAC_SHA384(secret, path + nonce))``, lower case."""
    return hmac.new(secret.encode(), (path + nonce).encode(), hashlib.sha384).hexdigest()


def verify_auth(api_keys: Mapping[str, str], path: str, request: Auth) -> bool:
    secret = api_keys.get(request.key)
    if secret is None or not request.nonce or not request.signature:
        return False
    return hmac.compare_digest(sign(secret, path, request.nonce), request.signature.lower())


# ------------------------------------------------------------------------------------ topics


@dataclass(frozen=True)
class TopicRef:
    """A topic a server accepted: which market chain it follows and how frames name it."""

    topic: str  # as subscribed
    kind: str  # channel kind: book, l1, trades, or a private kind
    product: str
    symbol: str | None  # canonical symbol
    wire_symbol: str | None  # symbol as frames spell it (legacy alias kept)
    grouping: int | None = None
    silent: bool = False  # acked but never delivers (grouping out of range, private topics)
    frame_topic: str | None = None  # topic on deltas when the exchange folds a spelling


@dataclass(frozen=True)
class Rejected:
    topic: str
    code: int  # BTSE error code for OSS error frames (1000 market, 1005 topic)


def canonical_symbol(product: str, symbol: str, known: frozenset[str]) -> tuple[str, str] | None:
    """(canonical, wire) for a symbol spelling, or None if the market is not simulated.

    Futures accept the legacy ``BTCPFC`` names (served under that name) and the markets-API
    spelling ``BTC-PERP-USDT``, which BTSE folds into ``BTC-PERP`` (reference §3.0).
    """
    if symbol in known:
        return symbol, symbol
    if product == "futures":
        alias = LEGACY_ALIASES.get(symbol)
        if alias is None and symbol.endswith("PFC") and "-" not in symbol:
            alias = symbol.removesuffix("PFC") + "-PERP"
        if alias in known:
            return alias, symbol
        if symbol.endswith("-USDT") and symbol.removesuffix("-USDT") in known:
            folded = symbol.removesuffix("-USDT")
            return folded, folded
    return None


PUBLIC_KINDS = ("book", "l1", "trades")


def resolve_topic(registry: Registry, server: Server, topic: str,
                  symbols: frozenset[str]) -> TopicRef | Rejected:
    """Decide what ``server`` does with a subscribe to ``topic``.

    ``Rejected`` carries the OSS error code; main endpoints simply leave rejected topics out of
    the ack (reference §1.2, §2.5).
    """
    matched = registry.match(server.product, topic)
    if matched is None:
        head, sep, digits = topic.rpartition("_")
        if sep and digits.isdigit() and int(digits) > MAX_GROUPING:
            # An out-of-range grouping is acked and then silent on the wire (reference §2.5).
            inner = resolve_topic(registry, server, f"{head}_0", symbols)
            if isinstance(inner, TopicRef) and inner.kind == "book":
                return TopicRef(topic, "book", server.product, inner.symbol, inner.wire_symbol,
                                grouping=int(digits), silent=True)
        return Rejected(topic, 1005)
    channel, params = matched
    if server.kind not in channel.server_kinds:
        return Rejected(topic, 1005)
    if channel.kind not in PUBLIC_KINDS:
        return TopicRef(topic, channel.kind, server.product, None, None, silent=True)
    raw_symbol = params.get("symbol")
    if raw_symbol is None:
        return Rejected(topic, 1005)
    names = canonical_symbol(server.product, raw_symbol, symbols)
    if names is None:
        return Rejected(topic, 1000)
    symbol, wire = names
    frame_topic = None
    if wire != raw_symbol:  # folded spelling: deltas travel on the canonical topic
        frame_topic = topic.replace(raw_symbol, wire)
    if channel.deprecated:
        bare = [v.template for v in channel.variants if "{" not in v.template]
        if bare:  # legacy topics name frames by the bare topic ("tradeHistoryApi") [wire]
            frame_topic = bare[0]
    if channel.kind != "book":
        return TopicRef(topic, channel.kind, server.product, symbol, wire, frame_topic=frame_topic)
    grouping_text = params.get("grouping", "0")
    if not grouping_text.isdigit():
        return Rejected(topic, 1005)
    grouping = int(grouping_text)
    return TopicRef(topic, "book", server.product, symbol, wire, grouping=grouping,
                    silent=grouping > MAX_GROUPING, frame_topic=frame_topic)
