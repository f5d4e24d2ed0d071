"""Section checks: the config's values against each other and against the spec catalog.

Each ``_section`` function takes the raw YAML value, reports problems through the
:class:`~collector.config.checker.Checker` and returns the frozen section (with defaults for
what was wrong, so that checking goes on and every problem is reported at once).
"""

from __future__ import annotations

import importlib
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.config.checker import (
    CL_ORDER_ID_RE,
    CURRENCY_RE,
    ENV_NAME_RE,
    Checker,
    field_names,
    kind_of,
    suggest,
)
from collector.config.model import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_SILENCE_S,
    LOG_FORMATS,
    LOG_LEVELS,
    MARKET_CHANNEL_KINDS,
    MAX_GROUPING,
    OTC_SIDES,
    Config,
    CredentialsConfig,
    HealthConfig,
    LoggingConfig,
    MarketConfig,
    OtcConfig,
    OtcQuoteConfig,
    StreamOverride,
    WatchdogConfig,
)
from collector.config.yaml_lines import KeyPath, dotted
from collector.protocol.symbols import canonical_symbol


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


def load_catalog(specs_dir: Path | None) -> SpecCatalog:
    # imported late: the registry reads files, and config must stay importable on its own
    specs = importlib.import_module("collector.specs")
    return catalog_from_registry(specs.load_registry(specs_dir))


def check_markets(ck: Checker, value: Any, catalog: SpecCatalog | None) -> tuple[MarketConfig, ...]:
    if value is None:
        return ()
    items = ck.seq(("markets",), value)
    allowed = field_names(MarketConfig)
    out: list[MarketConfig] = []
    seen: dict[tuple[str, str, str], KeyPath] = {}
    # (product, canonical symbol, channel) -> the spelling that configured it first, and where
    spellings: dict[tuple[str, str, str], tuple[str, KeyPath]] = {}
    for i, item in enumerate(items):
        path: KeyPath = ("markets", i)
        raw = ck.mapping(path, item, allowed, required=("product", "symbols", "channels"))
        if not raw and not isinstance(item, dict):
            continue
        product = _product(ck, (*path, "product"), raw.get("product"), catalog)
        symbols: list[str] = []
        symbol_paths: dict[str, KeyPath] = {}
        for j, s in enumerate(ck.seq((*path, "symbols"), raw.get("symbols") or [])):
            sym = ck.symbol((*path, "symbols", j), s)
            if sym is None:
                continue
            if sym in symbols:
                ck.problem((*path, "symbols", j), f"symbol {sym} is listed twice")
                continue
            symbols.append(sym)
            symbol_paths[sym] = (*path, "symbols", j)
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
            _second_spelling(ck, spellings, product, sym, channels, symbol_paths[sym])
        out.append(MarketConfig(product, tuple(symbols), tuple(channels), tuple(groupings or [0])))
    return tuple(out)


def _second_spelling(
    ck: Checker,
    spellings: dict[tuple[str, str, str], tuple[str, KeyPath]],
    product: str,
    sym: str,
    channels: Sequence[str],
    path: KeyPath,
) -> None:
    """Reports ``sym`` where another spelling of the same market has one of ``channels``.

    BTSE folds ``BTC-PERP-USDT`` (and the legacy ``BTCPFC``) into ``BTC-PERP`` (reference
    §3.0): two spellings of one stream feed one book, unsubscribing either stops both, and
    every row is written under the canonical symbol anyway. Different channels under two
    spellings are distinct topics and stay allowed."""
    canonical = canonical_symbol(sym)
    clashes: dict[tuple[str, KeyPath], list[str]] = {}
    for kind in channels:
        first = spellings.setdefault((product, canonical, kind), (sym, path))
        if first[0] != sym:
            clashes.setdefault(first, []).append(kind)
    for (other, where), kinds in clashes.items():
        ck.problem(
            path,
            f"{sym} is the {product} market {canonical}, whose {' and '.join(kinds)} "
            f"{'is' if len(kinds) == 1 else 'are'} already configured as {other} at "
            f"{dotted(where)}: BTSE folds both spellings into one subscription (one book, and "
            f"unsubscribing either stops both); configure each stream once, as {canonical}",
            canonical,
        )


def _product(ck: Checker, path: KeyPath, value: Any, catalog: SpecCatalog | None) -> str | None:
    if value is None:
        return None
    if value == "otc":
        ck.problem(path, "OTC quotes are configured in the top-level 'otc' section, not in markets")
        return None
    valid = catalog.products if catalog else ("futures", "spot")
    return ck.choice(path, value, valid, "product")


def _market_channel(
    ck: Checker, path: KeyPath, value: Any, product: str | None, valid: Sequence[str]
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


def check_endpoints(ck: Checker, value: Any, catalog: SpecCatalog | None) -> Mapping[str, str]:
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, dict):
        ck.problem(
            ("endpoints",), f"expected a mapping of server name to URL, got {kind_of(value)}"
        )
        return types.MappingProxyType({})
    out: dict[str, str] = {}
    valid = catalog.servers if catalog else None
    for name, url in value.items():
        path: KeyPath = ("endpoints", name)
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


def check_otc(ck: Checker, value: Any) -> OtcConfig | None:
    if value is None:
        return None
    raw = ck.mapping(("otc",), value, field_names(OtcConfig))
    quotes: list[OtcQuoteConfig] = []
    seen: set[tuple[Any, ...]] = set()
    q_allowed = field_names(OtcQuoteConfig)
    for i, item in enumerate(ck.seq(("otc", "quotes"), raw.get("quotes") or [])):
        path: KeyPath = ("otc", "quotes", i)
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
        cpath: KeyPath = ("otc", "credentials")
        if isinstance(raw["credentials"], dict) or raw["credentials"] is None:
            c = ck.mapping(cpath, raw["credentials"], field_names(CredentialsConfig))
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


def _listen(ck: Checker, value: Any) -> tuple[str, int] | None:
    path: KeyPath = ("health", "listen")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"127.0.0.1:{value}"
    if not isinstance(value, str):
        ck.problem(path, f"expected 'HOST:PORT' or null, got {kind_of(value)}")
        return None
    m = re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$", value.strip())
    if m is None or not 0 <= int(m.group(2)) <= 65535:
        ck.problem(path, f"{value!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
        return None
    return m.group(1).strip("[]"), int(m.group(2))


def check_health(ck: Checker, value: Any, markets: Sequence[MarketConfig]) -> HealthConfig:
    allowed = field_names(HealthConfig)
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
        path: KeyPath = ("health", "overrides", i)
        o = ck.mapping(
            path, item, field_names(StreamOverride), ("product", "symbol", "max_silence_s")
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


def check_logging(ck: Checker, value: Any) -> LoggingConfig:
    raw = ck.mapping(("logging",), value, field_names(LoggingConfig))
    kwargs: dict[str, Any] = {}
    if "level" in raw:
        lvl = raw["level"].lower() if isinstance(raw["level"], str) else raw["level"]
        kwargs["level"] = ck.choice(("logging", "level"), lvl, LOG_LEVELS, "log level") or "info"
    if "format" in raw:
        kwargs["format"] = (
            ck.choice(("logging", "format"), raw["format"], LOG_FORMATS, "format") or "auto"
        )
    return LoggingConfig(**kwargs)


def cross_checks(ck: Checker, cfg: Config, markets_given: bool) -> None:
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
