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

The package: ``model`` (the frozen dataclasses), ``yaml_lines`` (YAML with line numbers),
``checker`` (generic value checks), ``validate`` (section and cross checks against the spec
catalog), ``loader`` (:func:`load_config`, :func:`data_dir_problem`) and ``credentials``.
"""

from collector.config.checker import (
    CL_ORDER_ID_RE,
    CURRENCY_RE,
    ENV_NAME_RE,
    SECRET_KEY_RE,
    SYMBOL_RE,
    suggest,
)
from collector.config.credentials import CREDENTIALS_NAME, Credentials, mask, resolve_credentials
from collector.config.loader import TOP_LEVEL, data_dir_problem, load_config
from collector.config.model import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_SILENCE_S,
    ENVIRONMENTS,
    LOG_FORMATS,
    LOG_LEVELS,
    MARKET_CHANNEL_KINDS,
    MAX_GROUPING,
    OTC_SIDES,
    BookConfig,
    Config,
    ConnectionConfig,
    CredentialsConfig,
    HealthConfig,
    LoggingConfig,
    MarketConfig,
    MiB,
    OtcConfig,
    OtcQuoteConfig,
    PipelineConfig,
    StorageConfig,
    StreamOverride,
    StreamSpec,
    WatchdogConfig,
)
from collector.config.validate import SpecCatalog, catalog_from_registry
from collector.config.yaml_lines import dotted

__all__ = [
    "CL_ORDER_ID_RE",
    "CREDENTIALS_NAME",
    "CURRENCY_RE",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_SILENCE_S",
    "ENVIRONMENTS",
    "ENV_NAME_RE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MARKET_CHANNEL_KINDS",
    "MAX_GROUPING",
    "OTC_SIDES",
    "SECRET_KEY_RE",
    "SYMBOL_RE",
    "TOP_LEVEL",
    "BookConfig",
    "Config",
    "ConnectionConfig",
    "Credentials",
    "CredentialsConfig",
    "HealthConfig",
    "LoggingConfig",
    "MarketConfig",
    "MiB",
    "OtcConfig",
    "OtcQuoteConfig",
    "PipelineConfig",
    "SpecCatalog",
    "StorageConfig",
    "StreamOverride",
    "StreamSpec",
    "WatchdogConfig",
    "catalog_from_registry",
    "data_dir_problem",
    "dotted",
    "load_config",
    "mask",
    "resolve_credentials",
    "suggest",
]
