"""Frame decoding: raw text from one BTSE server -> one typed record (pure, never raises).

``Decoder(registry, product).decode(data, local_ts_us)`` returns one of the records of
:mod:`collector.protocol.records`. Data frames (``{"topic": ..., "data": ...}``) are routed by
the spec registry's topic matching (``registry.match(product, topic)``, cached per topic);
the channel kind decides the typed decoder: ``book``, ``l1``, ``trades``, ``otc_quote``, or a
private channel (counted). Control frames are recognised by shape: the text ``pong``,
``{"event": "subscribe"|"unsubscribe", "channel": [...]}``, ``{"event": "login", "success"}``
and ``{"severity": "ERROR", ...}`` in both the current (``errors[].error.code``) and the
pre-June-2023 (``error[].errorCode``) formats, and the REST-style
``{"status": 400, "errorCode": -7, "message": "Authenticate failed"}`` (an error frame too).

Fast path: book frames (``{"topic":"update:...``) go straight to a typed msgspec decoder
whose level prices/amounts are parsed from the decimal strings by msgspec itself (lax mode,
finite and >= 0 enforced by the type). Exactness (at most 15 significant digits, see
:mod:`numbers`) is proven per frame by ``has_long_digit_run``; only a frame with a long digit
run goes through the precise per-value check.

Anything that fails becomes a :class:`DecodeFailure` carrying the reason and the raw text;
``Decoder.failures`` counts them. With ``validate_every = N`` (N > 0) every N-th routed data
frame is also validated against its channel's payload schema (``registry.validate``); a frame
that drifts is still decoded and used, and a :class:`SpecDrift` is queued in ``drifts``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

import msgspec

from collector.errors import CollectorError, InexactNumber
from collector.protocol.numbers import exact_float, has_long_digit_run
from collector.protocol.records import (
    Ack,
    BookUpdate,
    DecodeFailure,
    ErrorEntry,
    ExchangeErrorFrame,
    L1Update,
    LoginAck,
    OtcQuote,
    PongFrame,
    PrivateMessage,
    Record,
    SpecDrift,
    Trade,
    Trades,
)
from collector.protocol.symbols import _cache as _SYMBOLS
from collector.protocol.symbols import canonical_symbol

# -- the registry API this module needs (collector.specs.Registry satisfies it) -----------


class ChannelLike(Protocol):
    @property
    def kind(self) -> str: ...


class RegistryLike(Protocol):
    def match(self, product: str, topic: str) -> tuple[Any, dict[str, str]] | None: ...

    def validate(self, channel: Any, payload: Any) -> None: ...


# -- wire shapes ----------------------------------------------------------------------------

# A decimal string (or number) parsed by msgspec: finite, >= 0.
Num = Annotated[float, msgspec.Meta(ge=0.0, le=1.7976931348623157e308)]
WireLevel = tuple[Num, Num]


class _BookData(msgspec.Struct, gc=False):
    bids: tuple[WireLevel, ...]  # tuples: untracked by the GC once seen (cheap buffering)
    asks: tuple[WireLevel, ...]
    seqNum: int
    prevSeqNum: int
    type: Literal["snapshot", "delta"]
    symbol: str
    timestamp: int


class _BookFrame(msgspec.Struct, gc=False):
    topic: str
    data: _BookData


class _L1Data(msgspec.Struct):
    bids: list[WireLevel]
    asks: list[WireLevel]
    symbol: str
    timestamp: int
    type: str = "snapshotL1"


class _L1Frame(msgspec.Struct):
    topic: str
    data: _L1Data


class _TradeData(msgspec.Struct):
    symbol: str
    side: str
    size: Num
    price: Num
    tradeId: int | str
    timestamp: int


class _TradeFrame(msgspec.Struct):
    topic: str
    data: list[_TradeData]


OptNum = Annotated[float, msgspec.Meta(ge=0.0, le=1.7976931348623157e308)] | None


class _OtcFrame(msgspec.Struct):
    topic: str
    clOrderId: str | None = None
    buyQuoteId: str | None = None
    sellQuoteId: str | None = None
    buyQuantity: OptNum = None
    buyUnitPrice: OptNum = None
    buyTotalAmount: OptNum = None
    sellQuantity: OptNum = None
    sellUnitPrice: OptNum = None
    sellTotalAmount: OptNum = None
    # documented as strings; BTSE's OTC status codes are numbers (30001 ...): both accepted
    status: str | int | None = None
    reason: str | int | None = None
    symbol: str | None = None
    timestamp: int | None = None


_Route = tuple[Any, str, dict[str, str], int]  # channel, kind, params, grouping
# Book frames take the typed fast path; compact (BTSE's wire) and Python json.dumps spacing.
BOOK_PREFIXES = (b'{"topic":"update:', b'{"topic": "update:')
_SIDES = {"BUY": "buy", "SELL": "sell", "buy": "buy", "sell": "sell"}
_MS = 1000
_TOPIC_CACHE_LIMIT = 50_000


def _level(levels: list[tuple[float, float]]) -> tuple[float, float] | None:
    return levels[0] if levels else None


def _text(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


class Decoder:
    """Decodes the frames of one product's servers (spot, futures or otc)."""

    def __init__(
        self,
        registry: RegistryLike,
        product: str,
        *,
        validate_every: int = 1000,
    ) -> None:
        if validate_every < 0:
            raise ValueError(f"validate_every must be >= 0 (0 disables), got {validate_every}")
        self.registry = registry
        self.product = product
        self.validate_every = validate_every
        self._validate_countdown = validate_every
        self._topics: dict[str, _Route | None] = {}
        self._book = msgspec.json.Decoder(_BookFrame, strict=False)
        self._l1 = msgspec.json.Decoder(_L1Frame, strict=False)
        self._trades = msgspec.json.Decoder(_TradeFrame, strict=False)
        self._otc = msgspec.json.Decoder(_OtcFrame, strict=False)
        self._any = msgspec.json.Decoder()
        self._exact = msgspec.json.Decoder(float_hook=Decimal)
        self.frames = 0
        self.failures = 0
        self.validated = 0
        self.drift_count = 0
        self.drifts: list[SpecDrift] = []

    # -- public ---------------------------------------------------------------------------

    def decode(self, data: str | bytes, local_ts: int) -> Record:
        """One typed record for one frame; a :class:`DecodeFailure` instead of raising."""
        self.frames += 1
        raw = data.encode() if type(data) is str else data
        assert isinstance(raw, bytes)
        if raw.startswith(BOOK_PREFIXES):  # the hot path
            try:
                frame = self._book.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                frame = None  # not the common shape: the generic path explains what is wrong
            if frame is not None:
                topic = frame.topic
                route = self._topics.get(topic)
                if route is None:
                    route = self._route(topic)
                if route is not None and route[1] == "book":
                    if has_long_digit_run(raw):
                        problem = self._inexact(raw, "book")
                        if problem is not None:
                            return self._fail(problem, data, topic, local_ts)
                    if self.validate_every:
                        self._validate_countdown -= 1
                        if self._validate_countdown <= 0:
                            self._validate(route[0], "book", topic, raw, local_ts)
                    return self.book_record(frame, local_ts)
        try:
            return self._decode_generic(raw, data, local_ts)
        except Exception as exc:  # the decoder never lets an exception escape
            return self._fail(f"unexpected {type(exc).__name__}: {exc}", data, None, local_ts)

    def book_frame(self, raw: bytes, local_ts: int) -> _BookFrame | None:
        """The hot path for book frames, without a record: the decoded frame of a routed
        ``book`` topic whose numbers are proven exact (and sampled against the spec), or
        None: then :meth:`decode` gives the record (or the failure) for the same bytes."""
        try:
            frame = self._book.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        route = self._topics.get(frame.topic)
        if route is None:
            route = self._route(frame.topic)
            if route is None:
                return None
        if route[1] != "book" or has_long_digit_run(raw):
            return None
        self.frames += 1
        if self.validate_every:
            self._validate_countdown -= 1
            if self._validate_countdown <= 0:
                self._validate(route[0], "book", frame.topic, raw, local_ts)
        return frame

    def book_record(self, frame: _BookFrame, local_ts: int) -> BookUpdate:
        """The :class:`BookUpdate` of a frame :meth:`book_frame` returned."""
        d = frame.data
        symbol = d.symbol
        route = self._route(frame.topic)
        return BookUpdate(
            self.product,
            frame.topic,
            _SYMBOLS.get(symbol) or canonical_symbol(symbol),
            symbol,
            route[3] if route is not None else 0,
            d.type == "snapshot",
            d.bids,
            d.asks,
            d.seqNum,
            d.prevSeqNum,
            d.timestamp * _MS,
            local_ts,
        )

    def take_drifts(self) -> list[SpecDrift]:
        drifts, self.drifts = self.drifts, []
        return drifts

    # -- routing --------------------------------------------------------------------------

    def _route(self, topic: str) -> _Route | None:
        try:
            return self._topics[topic]
        except KeyError:
            pass
        matched = self.registry.match(self.product, topic)
        route: _Route | None = None
        if matched is not None:
            params = dict(matched[1])
            grouping = params.get("grouping")
            route = (matched[0], str(matched[0].kind), params, int(grouping) if grouping else 0)
        if len(self._topics) >= _TOPIC_CACHE_LIMIT:
            self._topics.clear()
        self._topics[topic] = route
        return route

    def _fail(
        self, reason: str, data: str | bytes, topic: str | None, local_ts: int
    ) -> DecodeFailure:
        self.failures += 1
        return DecodeFailure(self.product, reason, _text(data), topic, local_ts)

    def _validate(self, channel: Any, kind: str, topic: str, raw: bytes, local_ts: int) -> None:
        self._validate_countdown = self.validate_every
        self.validated += 1
        try:
            self.registry.validate(channel, self._any.decode(raw))
        except (CollectorError, ValueError) as exc:
            self.drift_count += 1
            self.drifts.append(
                SpecDrift(
                    self.product,
                    kind,
                    topic,
                    str(getattr(exc, "message", exc)),
                    str(getattr(exc, "path", "")),
                    _text(raw),
                    local_ts,
                )
            )

    # -- exactness ------------------------------------------------------------------------

    def _inexact(self, raw: bytes, kind: str) -> str | None:
        """Precise check of every price/amount of a frame with a long digit run."""
        try:
            obj = self._exact.decode(raw)
            for value in _numbers_of(kind, obj):
                exact_float(value)
        except InexactNumber as exc:
            return str(exc)
        except (msgspec.DecodeError, TypeError, KeyError, AttributeError) as exc:
            return f"malformed {kind} frame: {exc}"
        return None

    # -- the generic path -----------------------------------------------------------------

    def _decode_generic(self, raw: bytes, data: str | bytes, local_ts: int) -> Record:
        stripped = raw.strip()
        if stripped == b"pong":
            return PongFrame(local_ts)
        try:
            obj = self._any.decode(raw)
        except msgspec.DecodeError as exc:
            return self._fail(f"not JSON: {exc}", data, None, local_ts)
        if not isinstance(obj, dict):
            return self._fail(f"not a JSON object but {type(obj).__name__}", data, None, local_ts)
        topic = obj.get("topic")
        if isinstance(topic, str):
            return self._data_frame(topic, raw, data, local_ts)
        if "severity" in obj:
            return self._error_frame(obj, data, local_ts)
        status_error = self._status_error(obj, local_ts)
        if status_error is not None:
            return status_error
        event = obj.get("event")
        if event == "login":
            return self._login(obj, data, local_ts)
        if event in ("subscribe", "unsubscribe"):
            channel = obj.get("channel", [])
            if not isinstance(channel, list) or not all(isinstance(t, str) for t in channel):
                return self._fail("ack 'channel' is not a list of topics", data, None, local_ts)
            return Ack(str(event), channel, local_ts)
        keys = ",".join(sorted(map(str, obj)))[:200]
        return self._fail(f"unrecognized frame (keys: {keys})", data, None, local_ts)

    def _data_frame(self, topic: str, raw: bytes, data: str | bytes, local_ts: int) -> Record:
        route = self._route(topic)
        if route is None:
            return self._fail(
                f"topic {topic!r} matches no {self.product} channel", data, topic, local_ts
            )
        channel, kind, params, _ = route
        decoder = _KIND_DECODERS.get(kind)
        if decoder is None:
            return PrivateMessage(self.product, kind, topic, local_ts)
        try:
            record = decoder(self, raw, params, local_ts)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._fail(f"{kind} frame: {exc}", data, topic, local_ts)
        except (ValueError, CollectorError) as exc:
            return self._fail(f"{kind} frame: {exc}", data, topic, local_ts)
        if has_long_digit_run(raw):
            problem = self._inexact(raw, kind)
            if problem is not None:
                return self._fail(problem, data, topic, local_ts)
        if self.validate_every:
            self._validate_countdown -= 1
            if self._validate_countdown <= 0:
                self._validate(channel, kind, topic, raw, local_ts)
        return record

    def _book_generic(self, raw: bytes, params: dict[str, str], local_ts: int) -> BookUpdate:
        return self.book_record(self._book.decode(raw), local_ts)

    def _l1_frame(self, raw: bytes, params: dict[str, str], local_ts: int) -> L1Update:
        frame = self._l1.decode(raw)
        d = frame.data
        return L1Update(
            self.product,
            frame.topic,
            canonical_symbol(d.symbol),
            d.symbol,
            _level(d.bids),
            _level(d.asks),
            d.timestamp * _MS,
            local_ts,
        )

    def _trade_batch(self, raw: bytes, params: dict[str, str], local_ts: int) -> Trades:
        frame = self._trades.decode(raw)
        trades = []
        for t in frame.data:
            side = _SIDES.get(t.side)
            if side is None:
                raise ValueError(f"trade side {t.side!r} is not BUY or SELL")
            tid = t.tradeId
            trades.append(
                Trade(
                    canonical_symbol(t.symbol),
                    t.symbol,
                    side,
                    t.price,
                    t.size,
                    str(tid),
                    tid if isinstance(tid, int) else (int(tid) if tid.isdigit() else None),
                    t.timestamp * _MS,
                )
            )
        return Trades(self.product, frame.topic, trades, local_ts)

    def _otc_quote(self, raw: bytes, params: dict[str, str], local_ts: int) -> OtcQuote:
        f = self._otc.decode(raw)
        return OtcQuote(
            f.symbol,
            f.clOrderId,
            f.buyQuoteId,
            f.sellQuoteId,
            f.buyQuantity,
            f.buyUnitPrice,
            f.buyTotalAmount,
            f.sellQuantity,
            f.sellUnitPrice,
            f.sellTotalAmount,
            _opt_str(f.status),
            _opt_str(f.reason),
            f.timestamp * _MS if f.timestamp is not None else None,
            local_ts,
        )

    def _error_frame(self, obj: dict[str, Any], data: str | bytes, local_ts: int) -> Record:
        severity = str(obj.get("severity"))
        entries: list[ErrorEntry] = []
        items = obj.get("errors")
        if isinstance(items, list):  # current format: errors[].error.{code,message}
            for item in items:
                err = item.get("error") if isinstance(item, dict) else None
                if not isinstance(err, dict):
                    return self._fail(
                        "error frame entry without 'error' object", data, None, local_ts
                    )
                code = err.get("code")
                arg = item.get("arg")
                entries.append(
                    ErrorEntry(
                        arg if isinstance(arg, str) else None,
                        code if isinstance(code, int) and not isinstance(code, bool) else None,
                        str(err.get("message", "")),
                    )
                )
        elif isinstance(obj.get("error"), list):  # pre-June-2023: error[].{arg,errorCode}
            for item in obj["error"]:
                if not isinstance(item, dict) or "errorCode" not in item:
                    return self._fail(
                        "old-format error entry without errorCode", data, None, local_ts
                    )
                arg = item.get("arg")
                entries.append(
                    ErrorEntry(arg if isinstance(arg, str) else None, None, str(item["errorCode"]))
                )
        else:
            return self._fail("error frame without 'errors' or 'error' list", data, None, local_ts)
        return ExchangeErrorFrame(severity, entries, local_ts)

    def _status_error(self, obj: dict[str, Any], local_ts: int) -> Record | None:
        """BTSE's REST-style error object (:func:`rest_error`): one entry, ``severity``
        ``HTTP <status>``; None when ``obj`` is not one."""
        error = rest_error(obj)
        if error is None:
            return None
        code, message = error
        return ExchangeErrorFrame(
            f"HTTP {obj.get('status')}",
            [ErrorEntry(None, code, message or str(obj.get("errorCode")))],
            local_ts,
        )

    def _login(self, obj: dict[str, Any], data: str | bytes, local_ts: int) -> Record:
        success = obj.get("success")
        if not isinstance(success, bool):
            return self._fail("login ack without boolean 'success'", data, None, local_ts)
        code = obj.get("code")
        message = obj.get("msg", obj.get("message"))
        return LoginAck(
            success,
            code if isinstance(code, int) and not isinstance(code, bool) else None,
            str(message) if message is not None else None,
            local_ts,
        )


def rest_error(obj: dict[str, Any]) -> tuple[int | None, str] | None:
    """``(errorCode, message)`` (``""`` when it has none) of BTSE's REST-style error object, ``{"status":400,"errorCode":
    -7,"message":"Authenticate failed","extraData":null}`` (reference §2.4, seen by roq;
    ``errorCode`` 10002 "User session is expired"); None for any other frame. Shared by the
    decoder (an error frame) and the feed (a logged-out OTC connection logs in again)."""
    status = obj.get("status")
    if "topic" in obj or "errorCode" not in obj or not isinstance(status, int) or status < 400:
        return None
    code = obj["errorCode"]
    message = obj.get("message")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        "" if message is None else str(message),
    )


def _opt_str(value: str | int | None) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


def _numbers_of(kind: str, obj: Any) -> list[Any]:
    """The values of a frame that become floats (decimal strings or Decimal JSON numbers)."""
    if kind in ("book", "l1"):
        data = obj["data"]
        return [v for side in ("bids", "asks") for level in data[side] for v in level]
    if kind == "trades":
        return [t[key] for t in obj["data"] for key in ("price", "size")]
    if kind == "otc_quote":
        keys = (
            "buyQuantity",
            "buyUnitPrice",
            "buyTotalAmount",
            "sellQuantity",
            "sellUnitPrice",
            "sellTotalAmount",
        )
        return [obj[k] for k in keys if obj.get(k) is not None]
    return []


_KIND_DECODERS: dict[str, Callable[[Decoder, bytes, dict[str, str], int], Record]] = {
    "book": Decoder._book_generic,
    "l1": Decoder._l1_frame,
    "trades": Decoder._trade_batch,
    "otc_quote": Decoder._otc_quote,
}
