"""The collector's YAML config, loaded once into frozen dataclasses.

``load_config(path)`` reads the file with a node-aware YAML loader so that every value keeps its
line number, checks everything (unknown keys, types, ranges, symbols, products, channels and
server names against the spec registry) and raises one :class:`~collector.errors.ConfigError`
listing *every* problem, each with file, line and dotted key (``markets[0].symbols[1]``) and,
for a misspelt key, the nearest valid one.

Credentials never live in the YAML: the ``otc.credentials`` section only names where they come
from (environment variables, a ``KEY=value`` file, or systemd's ``$CREDENTIALS_DIRECTORY/btse``);
:func:`resolve_credentials` reads them and raises :class:`~collector.errors.CredentialsError`
when one is missing. A key that looks like a secret in the YAML is itself a config error.

Relative paths (``data_dir``, ``specs_dir``, ``otc.credentials.file``) are relative to the
current working directory (the systemd units set ``WorkingDirectory=`` to the state directory).
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from collector.errors import ConfigError, ConfigProblem, CredentialsError, SpecError

MiB = 1024 * 1024

# A market symbol as BTSE spells it: upper-case letters, digits, '-' and '_' (BTC-USD, BTC-PERP,
# 1KPEPE-PERP, K_PEIPEI, BTCPFC, BTC-PERP-USDT). No dots, slashes or spaces: a symbol becomes a
# folder name in the store, so anything that could escape the data folder is rejected here.
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,39}$")
CURRENCY_RE = re.compile(r"^[A-Z0-9]{2,12}$")
# upper case only: a lower-case or mixed value here is more likely the secret itself
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
CL_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Keys that must never appear in the YAML: credentials come from the environment or a file.
SECRET_KEY_RE = re.compile(
    r"(secret|passw|passphrase|token|private|^api_?key$|^key$|apikey|credential_value)", re.I
)
ENVIRONMENTS = ("production", "testnet")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
OTC_SIDES = ("buy", "sell")
MAX_GROUPING = 8
# Channels a market entry may name: public market data. OTC quotes have their own section.
MARKET_CHANNEL_KINDS = ("book", "l1", "trades")
DEFAULT_LISTEN = "127.0.0.1:9108"
# Seconds of silence after which a stream counts as stale, per channel kind. Generous on
# purpose: an illiquid symbol may trade once an hour, but its book still ticks; the feed's own
# per-connection deadline (connection.stale_after_s) replaces dead sockets much sooner.
DEFAULT_MAX_SILENCE_S: Mapping[str, float] = types.MappingProxyType(
    {"book": 60.0, "l1": 120.0, "trades": 3600.0, "otc_quote": 60.0}
)
CREDENTIALS_NAME = "btse"  # systemd: LoadCredential=btse:/etc/btse-collector/credentials


def _num(default: float, lo: float, hi: float, *, lo_open: bool = False) -> Any:
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open})


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class MarketConfig:
    """One ``markets[]`` entry: the channels to follow for these symbols of one product."""

    product: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    groupings: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class OtcQuoteConfig:
    """One OTC quote stream; BTSE tells streams apart by symbol + quantity + clOrderId."""

    symbol: str
    quantity: float
    currency: str
    side: str | None = None
    cl_order_id: str | None = None


@dataclass(frozen=True)
class CredentialsConfig:
    """Where the BTSE API key and secret come from (never the values themselves)."""

    api_key_env: str = "BTSE_API_KEY"
    api_secret_env: str = "BTSE_API_SECRET"
    file: Path | None = None


@dataclass(frozen=True)
class OtcConfig:
    quotes: tuple[OtcQuoteConfig, ...] = ()
    credentials: CredentialsConfig = CredentialsConfig()


@dataclass(frozen=True)
class StorageConfig:
    flush_interval_s: float = _num(5.0, 0.05, 3600.0)
    rotate_interval_s: float = _num(3600.0, 1.0, 7 * 86400.0)
    rotate_max_bytes: int = _num(256 * MiB, 1 * MiB, 64 * 1024 * MiB)
    row_group_rows: int = _num(250_000, 1_000, 10_000_000)
    raw: bool = True
    compression_level: int = _num(3, 1, 22)


@dataclass(frozen=True)
class BookConfig:
    snapshot_interval_s: float = _num(60.0, 1.0, 86400.0)
    snapshot_depth: int = _num(25, 1, 50)
    validate_sample_rate: float = _num(0.0, 0.0, 1.0)


@dataclass(frozen=True)
class ConnectionConfig:
    ping_interval_s: float = _num(15.0, 1.0, 55.0)
    pong_timeout_s: float = _num(10.0, 1.0, 120.0)
    stale_after_s: float = _num(45.0, 5.0, 3600.0)
    max_topics_per_connection: int = _num(100, 1, 100)
    backoff_initial_s: float = _num(1.0, 0.01, 60.0)
    backoff_max_s: float = _num(60.0, 0.1, 3600.0)
    backoff_jitter: float = _num(0.2, 0.0, 1.0)
    max_frame_bytes: int = _num(4 * MiB, 64 * 1024, 256 * MiB)
    open_timeout_s: float = _num(10.0, 0.5, 300.0)


@dataclass(frozen=True)
class PipelineConfig:
    queue_max_frames: int = _num(100_000, 100, 10_000_000)
    batch_max_rows: int = _num(50_000, 1, 10_000_000)
    batch_max_delay_s: float = _num(0.5, 0.001, 60.0)


@dataclass(frozen=True)
class StreamOverride:
    """A per-stream freshness threshold; ``channel=None`` applies to every channel of the symbol."""

    product: str
    symbol: str
    max_silence_s: float
    channel: str | None = None


@dataclass(frozen=True)
class WatchdogConfig:
    """When the systemd watchdog is fed (see ``collector.service.watchdog``)."""

    min_fresh_fraction: float = _num(1.0, 0.0, 1.0)
    max_loop_lag_s: float = _num(5.0, 0.01, 600.0)
    max_flush_age_s: float = _num(60.0, 1.0, 86400.0)


@dataclass(frozen=True)
class HealthConfig:
    listen: tuple[str, int] | None = ("127.0.0.1", 9108)
    max_silence_s: Mapping[str, float] = field(default_factory=lambda: DEFAULT_MAX_SILENCE_S)
    overrides: tuple[StreamOverride, ...] = ()
    watchdog: WatchdogConfig = WatchdogConfig()

    def threshold(self, product: str, kind: str, symbol: str) -> float:
        """Seconds of silence after which the stream (product, kind, symbol) is stale."""
        generic: float | None = None
        for o in self.overrides:
            if o.product == product and o.symbol == symbol:
                if o.channel == kind:
                    return o.max_silence_s
                if o.channel is None:
                    generic = o.max_silence_s
        if generic is not None:
            return generic
        return self.max_silence_s.get(kind, max(self.max_silence_s.values(), default=60.0))


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class StreamSpec:
    """One stream the collector follows: a (product, channel kind, symbol, grouping)."""

    product: str
    kind: str
    symbol: str
    grouping: int | None = None


@dataclass(frozen=True)
class Config:
    source: Path
    data_dir: Path
    environment: str = "production"
    specs_dir: Path | None = None
    endpoints: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    markets: tuple[MarketConfig, ...] = ()
    otc: OtcConfig | None = None
    storage: StorageConfig = StorageConfig()
    book: BookConfig = BookConfig()
    connection: ConnectionConfig = ConnectionConfig()
    pipeline: PipelineConfig = PipelineConfig()
    health: HealthConfig = HealthConfig()
    logging: LoggingConfig = LoggingConfig()

    def streams(self) -> tuple[StreamSpec, ...]:
        """Every stream this config asks for, in config order (book: one per grouping)."""
        out: list[StreamSpec] = []
        for m in self.markets:
            for symbol in m.symbols:
                for kind in m.channels:
                    if kind == "book":
                        out.extend(StreamSpec(m.product, kind, symbol, g) for g in m.groupings)
                    else:
                        out.append(StreamSpec(m.product, kind, symbol))
        if self.otc is not None:
            out.extend(StreamSpec("otc", "otc_quote", q.symbol) for q in self.otc.quotes)
        return tuple(out)

    @property
    def needs_credentials(self) -> bool:
        return self.otc is not None and bool(self.otc.quotes)


# --------------------------------------------------------------------------- spec catalog


@dataclass(frozen=True)
class SpecCatalog:
    """What the config is checked against: products, their channel kinds, server names.

    Built from the spec registry by :func:`catalog_from_registry`; tests build one by hand.
    """

    channels: Mapping[str, tuple[str, ...]]  # product -> channel kinds a market may name
    servers: tuple[str, ...]  # every server name in the specs
    has_otc: bool = True  # the specs describe the OTC quote stream

    @property
    def products(self) -> tuple[str, ...]:
        return tuple(sorted(self.channels))


def catalog_from_registry(registry: Any) -> SpecCatalog:
    """Products with public market-data channels (book, l1, trades) and every server name."""
    channels: dict[str, tuple[str, ...]] = {}
    for product in registry.products:
        kinds = sorted(
            {
                c.kind
                for c in registry.channels(product)
                if c.kind in MARKET_CHANNEL_KINDS and not c.auth_required and not c.deprecated
            }
        )
        if kinds:
            channels[product] = tuple(kinds)
    servers = tuple(sorted(s.name for s in registry.servers()))
    return SpecCatalog(types.MappingProxyType(channels), servers, "otc" in registry.products)


def _load_catalog(specs_dir: Path | None) -> SpecCatalog:
    # imported late: the registry reads files, and config must stay importable on its own
    specs = importlib.import_module("collector.specs")
    return catalog_from_registry(specs.load_registry(specs_dir))


# --------------------------------------------------------------------------- YAML with lines

Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """``("markets", 0, "symbols")`` -> ``"markets[0].symbols"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class _Doc:
    """Plain Python values from a YAML file plus the line of every dotted path."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.key_lines: dict[Path_, int] = {}
        self.duplicates: list[tuple[Path_, int]] = []

    def build(self, loader: yaml.SafeLoader, node: yaml.Node, path: Path_) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                child = (*path, key)
                if key in out:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                self.key_lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(loader, value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(loader, n, (*path, i)) for i, n in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def line(self, path: Path_) -> int | None:
        while path:
            if path in self.key_lines:
                return self.key_lines[path]
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def _parse_yaml(text: str, file: str) -> tuple[Any, _Doc]:
    doc = _Doc()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, doc
        return doc.build(loader, node, ()), doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(
            [ConfigProblem(file, line, "(yaml)", f"invalid YAML: {message}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(file, None, "(yaml)", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- checker


def suggest(word: str, valid: Sequence[str]) -> str | None:
    """The nearest valid name for a typo (``symbls`` -> ``symbols``), or ``None``."""
    hits = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return hits[0] if hits else None


class _Checker:
    def __init__(self, file: str, doc: _Doc) -> None:
        self.file = file
        self.doc = doc
        self.problems: list[ConfigProblem] = []

    def problem(self, path: Path_, message: str, suggestion: str | None = None) -> None:
        self.problems.append(
            ConfigProblem(self.file, self.doc.line(path), dotted(path), message, suggestion)
        )

    # -- shapes

    def mapping(
        self, path: Path_, value: Any, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Check that ``value`` is a mapping with only ``allowed`` keys; returns it (or {})."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_kind(value)}")
            return {}
        suggested: set[str] = set()
        for key in value:
            if key in allowed:
                continue
            if SECRET_KEY_RE.search(key):
                self.problem(
                    (*path, key),
                    "looks like a credential: secrets never go in the config file; set "
                    "otc.credentials (environment variables or a credentials file) instead",
                )
            else:
                hint = suggest(key, allowed)
                suggested.add(hint or "")
                self.problem((*path, key), f"unknown key (valid keys: {', '.join(allowed)})", hint)
        # a missing key whose typo was reported above needs no second problem
        missing = [k for k in required if k not in value and k not in suggested]
        if missing:
            names = ", ".join(repr(k) for k in missing)
            self.problem(path, f"missing required key{'s' if len(missing) > 1 else ''} {names}")
        return {k: v for k, v in value.items() if k in allowed}

    def seq(self, path: Path_, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return [value]  # a single item where a list is expected: accept it
        self.problem(path, f"expected a list, got {_kind(value)}")
        return []

    def string(self, path: Path_, value: Any) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.problem(path, f"expected a non-empty string, got {_kind(value)}")
        return None

    def choice(
        self, path: Path_, value: Any, valid: Sequence[str], what: str = "value"
    ) -> str | None:
        if isinstance(value, str) and value in valid:
            return value
        shown = value if isinstance(value, str | int | float) else _kind(value)
        hint = suggest(value, valid) if isinstance(value, str) else None
        if isinstance(value, str) and hint is None and value.lower() in valid:
            hint = value.lower()
        self.problem(path, f"unknown {what} {shown!r} (valid: {', '.join(valid)})", hint)
        return None

    def number(
        self, path: Path_, value: Any, lo: float, hi: float, *, integer: bool, lo_open: bool = False
    ) -> float | int | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            want = "an integer" if integer else "a number"
            self.problem(path, f"expected {want}, got {_kind(value)}")
            return None
        if integer and isinstance(value, float):
            if not value.is_integer():
                self.problem(path, f"expected an integer, got {value!r}")
                return None
            value = int(value)
        number: float | int = value
        if isinstance(number, float) and not math.isfinite(number):
            self.problem(path, f"expected a finite number, got {value!r}")
            return None
        too_low = number <= lo if lo_open else number < lo
        if too_low or number > hi:
            bracket = "(" if lo_open else "["
            self.problem(path, f"{number!r} is out of range {bracket}{_fmt(lo)}, {_fmt(hi)}]")
            return None
        return number

    def symbol(self, path: Path_, value: Any) -> str | None:
        if isinstance(value, str) and SYMBOL_RE.match(value):
            return value
        if isinstance(value, str) and SYMBOL_RE.match(value.upper()):
            self.problem(path, f"symbol {value!r} must be upper case", value.upper())
        else:
            self.problem(
                path,
                f"invalid symbol {value!r}: use BTSE's spelling, upper-case letters, digits, "
                "'-' and '_' only (e.g. BTC-USD, BTC-PERP)",
            )
        return None

    def path_value(self, path: Path_, value: Any) -> Path | None:
        text = self.string(path, value)
        if text is None:
            return None
        if "\x00" in text:
            self.problem(path, "path contains a NUL byte")
            return None
        return Path(text).expanduser()

    # -- generic flat sections (numbers and booleans with ranges from field metadata)

    def section(self, path: Path_, value: Any, cls: type[Any]) -> Any:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls)]
        raw = self.mapping(path, value, names)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            fpath = (*path, f.name)
            hint = hints[f.name]
            v = raw[f.name]
            if hint is bool:
                if isinstance(v, bool):
                    kwargs[f.name] = v
                else:
                    self.problem(fpath, f"expected true or false, got {_kind(v)}")
            elif hint in (int, float):
                meta = f.metadata
                n = self.number(
                    fpath, v, meta["lo"], meta["hi"], integer=hint is int, lo_open=meta["lo_open"]
                )
                if n is not None:
                    kwargs[f.name] = float(n) if hint is float else int(n)
            else:  # pragma: no cover - a programming error in a section class
                raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {hint}")
        return cls(**kwargs)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}" if value.strip() else "an empty string"
    return f"{type(value).__name__} {value!r}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _field_names(cls: type[Any]) -> list[str]:
    return [f.name for f in fields(cls)]


# --------------------------------------------------------------------------- sections


def _markets(ck: _Checker, value: Any, catalog: SpecCatalog | None) -> tuple[MarketConfig, ...]:
    if value is None:
        return ()
    items = ck.seq(("markets",), value)
    allowed = _field_names(MarketConfig)
    out: list[MarketConfig] = []
    seen: dict[tuple[str, str, str], Path_] = {}
    for i, item in enumerate(items):
        path: Path_ = ("markets", i)
        raw = ck.mapping(path, item, allowed, required=("product", "symbols", "channels"))
        if not raw and not isinstance(item, dict):
            continue
        product = _product(ck, (*path, "product"), raw.get("product"), catalog)
        symbols: list[str] = []
        for j, s in enumerate(ck.seq((*path, "symbols"), raw.get("symbols") or [])):
            sym = ck.symbol((*path, "symbols", j), s)
            if sym is None:
                continue
            if sym in symbols:
                ck.problem((*path, "symbols", j), f"symbol {sym} is listed twice")
                continue
            symbols.append(sym)
        if "symbols" in raw and raw["symbols"] in ([], None):
            ck.problem((*path, "symbols"), "needs at least one symbol")
        channels: list[str] = []
        valid_channels = (
            catalog.channels.get(product, MARKET_CHANNEL_KINDS)
            if catalog and product
            else MARKET_CHANNEL_KINDS
        )
        for j, c in enumerate(ck.seq((*path, "channels"), raw.get("channels") or [])):
            kind = _market_channel(ck, (*path, "channels", j), c, product, valid_channels)
            if kind is not None and kind not in channels:
                channels.append(kind)
        if "channels" in raw and raw["channels"] in ([], None):
            ck.problem((*path, "channels"), "needs at least one channel")
        groupings: list[int] = []
        for j, g in enumerate(ck.seq((*path, "groupings"), raw.get("groupings", [0]))):
            n = ck.number((*path, "groupings", j), g, 0, MAX_GROUPING, integer=True)
            if n is not None and int(n) not in groupings:
                groupings.append(int(n))
        if "groupings" in raw and "book" not in channels and channels:
            ck.problem((*path, "groupings"), "groupings only apply to the 'book' channel")
        if product is None or not symbols or not channels:
            continue
        for sym in symbols:
            for kind in channels:
                key = (product, sym, kind)
                if key in seen:
                    ck.problem(
                        (*path, "symbols"),
                        f"{product} {sym} {kind} is already configured at {dotted(seen[key])}",
                    )
                seen[key] = path
        out.append(MarketConfig(product, tuple(symbols), tuple(channels), tuple(groupings or [0])))
    return tuple(out)


def _product(ck: _Checker, path: Path_, value: Any, catalog: SpecCatalog | None) -> str | None:
    if value is None:
        return None
    if value == "otc":
        ck.problem(path, "OTC quotes are configured in the top-level 'otc' section, not in markets")
        return None
    valid = catalog.products if catalog else ("futures", "spot")
    return ck.choice(path, value, valid, "product")


def _market_channel(
    ck: _Checker, path: Path_, value: Any, product: str | None, valid: Sequence[str]
) -> str | None:
    if isinstance(value, str) and value in MARKET_CHANNEL_KINDS and value not in valid:
        ck.problem(
            path, f"product {product!r} has no {value!r} channel (valid: {', '.join(valid)})"
        )
        return None
    if isinstance(value, str) and value in valid:
        return value
    where = f" for {product}" if product else ""
    hint = suggest(value, valid) if isinstance(value, str) else None
    ck.problem(path, f"unknown channel {value!r}{where} (valid: {', '.join(valid)})", hint)
    return None


def _endpoints(ck: _Checker, value: Any, catalog: SpecCatalog | None) -> Mapping[str, str]:
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, dict):
        ck.problem(("endpoints",), f"expected a mapping of server name to URL, got {_kind(value)}")
        return types.MappingProxyType({})
    out: dict[str, str] = {}
    valid = catalog.servers if catalog else None
    for name, url in value.items():
        path: Path_ = ("endpoints", name)
        if valid is not None and name not in valid:
            ck.problem(
                path, f"unknown server {name!r} (valid: {', '.join(valid)})", suggest(name, valid)
            )
            continue
        text = ck.string(path, url)
        if text is None:
            continue
        if not re.match(r"^wss?://[^/\s:]+(:\d{1,5})?(/\S*)?$", text):
            ck.problem(path, f"{text!r} is not a ws:// or wss:// URL")
            continue
        out[name] = text
    return types.MappingProxyType(out)


def _otc(ck: _Checker, value: Any) -> OtcConfig | None:
    if value is None:
        return None
    raw = ck.mapping(("otc",), value, _field_names(OtcConfig))
    quotes: list[OtcQuoteConfig] = []
    seen: set[tuple[Any, ...]] = set()
    q_allowed = _field_names(OtcQuoteConfig)
    for i, item in enumerate(ck.seq(("otc", "quotes"), raw.get("quotes") or [])):
        path: Path_ = ("otc", "quotes", i)
        q = ck.mapping(path, item, q_allowed, required=("symbol", "quantity", "currency"))
        symbol = ck.symbol((*path, "symbol"), q["symbol"]) if "symbol" in q else None
        quantity = (
            ck.number((*path, "quantity"), q["quantity"], 0.0, 1e12, integer=False, lo_open=True)
            if "quantity" in q
            else None
        )
        currency = None
        if "currency" in q:
            c = q["currency"]
            if isinstance(c, str) and CURRENCY_RE.match(c):
                currency = c
            else:
                hint = c.upper() if isinstance(c, str) and CURRENCY_RE.match(c.upper()) else None
                ck.problem((*path, "currency"), f"invalid currency {c!r} (e.g. BTC, USD)", hint)
        side = (
            ck.choice((*path, "side"), q["side"], OTC_SIDES, "side")
            if q.get("side") is not None
            else None
        )
        cl_order_id = None
        if q.get("cl_order_id") is not None:
            cid = q["cl_order_id"]
            if isinstance(cid, str) and CL_ORDER_ID_RE.match(cid):
                cl_order_id = cid
            else:
                ck.problem((*path, "cl_order_id"), "expected 1-64 characters of [A-Za-z0-9_.:-]")
        if symbol is None or quantity is None or currency is None:
            continue
        quote = OtcQuoteConfig(symbol, float(quantity), currency, side, cl_order_id)
        ident = (symbol, quote.quantity, currency, side, cl_order_id)
        if ident in seen:
            ck.problem(path, f"the same quote ({symbol} {quantity} {currency}) is configured twice")
            continue
        seen.add(ident)
        quotes.append(quote)
    creds = CredentialsConfig()
    if "credentials" in raw:
        cpath: Path_ = ("otc", "credentials")
        if isinstance(raw["credentials"], dict) or raw["credentials"] is None:
            c = ck.mapping(cpath, raw["credentials"], _field_names(CredentialsConfig))
        else:  # never echo it: it may be a secret pasted by mistake
            ck.problem(cpath, "expected a mapping (api_key_env, api_secret_env, file)")
            c = {}
        kwargs: dict[str, Any] = {}
        for key in ("api_key_env", "api_secret_env"):
            if key not in c:
                continue
            name = c[key]
            if isinstance(name, str) and ENV_NAME_RE.match(name):
                kwargs[key] = name
            else:  # never echo the value: it may be the credential pasted by mistake
                ck.problem(
                    (*cpath, key),
                    "expected the NAME of an environment variable (A-Z, 0-9, _), "
                    "not the credential itself",
                )
        if c.get("file") is not None:
            kwargs["file"] = ck.path_value((*cpath, "file"), c["file"])
        creds = CredentialsConfig(**kwargs)
    return OtcConfig(tuple(quotes), creds)


def _listen(ck: _Checker, value: Any) -> tuple[str, int] | None:
    path: Path_ = ("health", "listen")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"127.0.0.1:{value}"
    if not isinstance(value, str):
        ck.problem(path, f"expected 'HOST:PORT' or null, got {_kind(value)}")
        return None
    m = re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$", value.strip())
    if m is None or not 0 <= int(m.group(2)) <= 65535:
        ck.problem(path, f"{value!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
        return None
    return m.group(1).strip("[]"), int(m.group(2))


def _health(ck: _Checker, value: Any, markets: Sequence[MarketConfig]) -> HealthConfig:
    allowed = _field_names(HealthConfig)
    raw = ck.mapping(("health",), value, allowed)
    kwargs: dict[str, Any] = {}
    if "listen" in raw:
        kwargs["listen"] = _listen(ck, raw["listen"])
    kinds = tuple(DEFAULT_MAX_SILENCE_S)
    if "max_silence_s" in raw:
        thresholds = dict(DEFAULT_MAX_SILENCE_S)
        m = ck.mapping(("health", "max_silence_s"), raw["max_silence_s"], kinds)
        for kind, v in m.items():
            n = ck.number(("health", "max_silence_s", kind), v, 1.0, 7 * 86400.0, integer=False)
            if n is not None:
                thresholds[kind] = float(n)
        kwargs["max_silence_s"] = types.MappingProxyType(thresholds)
    overrides: list[StreamOverride] = []
    configured = {(m.product, s, k) for m in markets for s in m.symbols for k in m.channels}
    for i, item in enumerate(ck.seq(("health", "overrides"), raw.get("overrides") or [])):
        path: Path_ = ("health", "overrides", i)
        o = ck.mapping(
            path, item, _field_names(StreamOverride), ("product", "symbol", "max_silence_s")
        )
        product = ck.string((*path, "product"), o["product"]) if "product" in o else None
        symbol = ck.symbol((*path, "symbol"), o["symbol"]) if "symbol" in o else None
        channel = (
            ck.choice((*path, "channel"), o["channel"], kinds, "channel")
            if o.get("channel") is not None
            else None
        )
        secs = (
            ck.number(
                (*path, "max_silence_s"), o["max_silence_s"], 1.0, 30 * 86400.0, integer=False
            )
            if "max_silence_s" in o
            else None
        )
        if product is None or symbol is None or secs is None:
            continue
        if product != "otc" and not any(
            (product, symbol, k) in configured for k in ([channel] if channel else kinds)
        ):
            ck.problem(
                path,
                f"{product} {symbol} {channel or ''} is not a configured stream".replace("  ", " "),
            )
            continue
        overrides.append(StreamOverride(product, symbol, float(secs), channel))
    kwargs["overrides"] = tuple(overrides)
    if "watchdog" in raw:
        kwargs["watchdog"] = ck.section(("health", "watchdog"), raw["watchdog"], WatchdogConfig)
    return HealthConfig(**kwargs)


def _logging(ck: _Checker, value: Any) -> LoggingConfig:
    raw = ck.mapping(("logging",), value, _field_names(LoggingConfig))
    kwargs: dict[str, Any] = {}
    if "level" in raw:
        lvl = raw["level"].lower() if isinstance(raw["level"], str) else raw["level"]
        kwargs["level"] = ck.choice(("logging", "level"), lvl, LOG_LEVELS, "log level") or "info"
    if "format" in raw:
        kwargs["format"] = (
            ck.choice(("logging", "format"), raw["format"], LOG_FORMATS, "format") or "auto"
        )
    return LoggingConfig(**kwargs)


def _cross_checks(ck: _Checker, cfg: Config, markets_given: bool) -> None:
    c = cfg.connection
    if c.backoff_max_s < c.backoff_initial_s:
        ck.problem(("connection", "backoff_max_s"), "must be >= connection.backoff_initial_s")
    if c.stale_after_s <= c.ping_interval_s:
        ck.problem(
            ("connection", "stale_after_s"), "must be longer than connection.ping_interval_s"
        )
    if c.pong_timeout_s >= c.stale_after_s:
        ck.problem(
            ("connection", "pong_timeout_s"), "must be shorter than connection.stale_after_s"
        )
    if cfg.pipeline.batch_max_rows > cfg.storage.row_group_rows:
        ck.problem(("pipeline", "batch_max_rows"), "must not exceed storage.row_group_rows")
    if cfg.health.watchdog.max_flush_age_s <= cfg.storage.flush_interval_s:
        ck.problem(
            ("health", "watchdog", "max_flush_age_s"),
            "must be longer than storage.flush_interval_s",
        )
    if not markets_given and not cfg.needs_credentials:
        ck.problem(("markets",), "nothing to collect: configure at least one market or OTC quote")


# --------------------------------------------------------------------------- entry points

TOP_LEVEL = tuple(f.name for f in fields(Config) if f.name != "source")


def load_config(
    path: str | os.PathLike[str],
    *,
    catalog: SpecCatalog | None = None,
    load_catalog: Callable[[Path | None], SpecCatalog] | None = None,
) -> Config:
    """Load and check ``path``; raise :class:`ConfigError` with every problem found.

    Products, channels and server names are checked against ``catalog`` (default: built from
    the spec registry in ``specs_dir``; a broken spec directory is reported as a problem).
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigProblem(file, None, "(file)", f"cannot read config: {exc}")]
        ) from None
    data, doc = _parse_yaml(text, file)
    ck = _Checker(file, doc)
    for dup_path, line in doc.duplicates:
        ck.problems.append(ConfigProblem(file, line, dotted(dup_path), "key given twice"))
    if data is None:
        data = {}
    top = ck.mapping((), data, TOP_LEVEL, required=("data_dir",))

    kwargs: dict[str, Any] = {"source": Path(path)}
    data_dir = ck.path_value(("data_dir",), top["data_dir"]) if "data_dir" in top else None
    environment = "production"
    if "environment" in top:
        environment = (
            ck.choice(("environment",), top["environment"], ENVIRONMENTS, "environment")
            or environment
        )
    kwargs["environment"] = environment
    specs_dir = (
        ck.path_value(("specs_dir",), top["specs_dir"])
        if top.get("specs_dir") is not None
        else None
    )
    kwargs["specs_dir"] = specs_dir

    if catalog is None:
        try:
            catalog = (load_catalog or _load_catalog)(specs_dir)
        except SpecError as exc:
            ck.problem(("specs_dir",), f"cannot load the specs: {exc}")
        except OSError as exc:
            ck.problem(("specs_dir",), f"cannot read the specs: {exc}")

    kwargs["endpoints"] = _endpoints(ck, top.get("endpoints"), catalog)
    markets = _markets(ck, top.get("markets"), catalog)
    kwargs["markets"] = markets
    kwargs["otc"] = otc = _otc(ck, top.get("otc"))
    if otc is not None and otc.quotes and catalog is not None and not catalog.has_otc:
        ck.problem(("otc", "quotes"), "the specs in use describe no OTC product")
    for name, cls in (
        ("storage", StorageConfig),
        ("book", BookConfig),
        ("connection", ConnectionConfig),
        ("pipeline", PipelineConfig),
    ):
        kwargs[name] = ck.section((name,), top.get(name), cls)
    kwargs["health"] = _health(ck, top.get("health"), markets)
    kwargs["logging"] = _logging(ck, top.get("logging"))
    if data_dir is None:
        data_dir = Path(".")  # reported above as missing; keeps building for more problems
    kwargs["data_dir"] = data_dir
    cfg = Config(**kwargs)
    _cross_checks(ck, cfg, bool(top.get("markets")) or bool(cfg.otc and top.get("otc")))
    if ck.problems:
        ck.problems.sort(key=lambda p: (p.line or 0, p.key))
        raise ConfigError(ck.problems)
    return cfg


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """A BTSE API key and secret. ``repr`` and ``str`` never show the secret."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        return f"Credentials(api_key={mask(self.api_key)}, api_secret=***, source={self.source!r})"

    __str__ = __repr__


def mask(value: str) -> str:
    """Show at most the first 4 characters of a key: ``abcd…`` (``***`` if shorter than 12)."""
    return f"{value[:4]}…" if len(value) >= 12 else "***"


def _read_credentials_file(path: Path, cfg: CredentialsConfig) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise CredentialsError(f"{path}:{n}: expected NAME=value (value not shown)")
        name, _, value = stripped.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def resolve_credentials(
    cfg: CredentialsConfig, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The API key and secret, from the first source that has both.

    Order: the environment variables ``cfg.api_key_env`` / ``cfg.api_secret_env``; the file
    ``cfg.file``; ``$CREDENTIALS_DIRECTORY/btse`` (systemd ``LoadCredential=btse:...``). Files
    hold ``NAME=value`` lines with the same names as the environment variables.
    """
    env = os.environ if environ is None else environ
    key, secret = env.get(cfg.api_key_env, ""), env.get(cfg.api_secret_env, "")
    tried = [f"environment variables {cfg.api_key_env}/{cfg.api_secret_env}"]
    if key and secret:
        return Credentials(key, secret, "environment")
    files: list[Path] = []
    if cfg.file is not None:
        files.append(cfg.file)
    if env.get("CREDENTIALS_DIRECTORY"):
        files.append(Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIALS_NAME)
    for path in files:
        if path == cfg.file or path.exists():
            values = _read_credentials_file(path, cfg)
            k, s = values.get(cfg.api_key_env, ""), values.get(cfg.api_secret_env, "")
            if k and s:
                return Credentials(k, s, str(path))
            missing = [n for n, v in ((cfg.api_key_env, k), (cfg.api_secret_env, s)) if not v]
            raise CredentialsError(f"credentials file {path} has no {' or '.join(missing)}")
        tried.append(str(path))
    raise CredentialsError(
        "OTC quotes need BTSE API credentials, none found (tried " + ", ".join(tried) + "); "
        "see deploy/credentials.example"
    )


def data_dir_problem(path: Path) -> str | None:
    """Why the collector could not write ``path`` (or create it), or ``None`` if it can."""
    target = path.resolve()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            return f"{target}: no existing parent directory"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} exists and is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == target:
            return f"{target} is not writable by this user"
        return f"cannot create {target}: {probe} is not writable by this user"
    return None
