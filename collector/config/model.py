"""The config model: frozen dataclasses, one per section of the YAML file, and their defaults.

Number fields carry their valid range in field metadata (``_num``); the checker reads it, so a
range lives in one place. :meth:`Config.streams` lists every stream the config asks for.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

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
    batch_max_rows: int = _num(25000, 1, 10_000_000)
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
