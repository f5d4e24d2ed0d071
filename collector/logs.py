"""Logging setup: structlog events with key-value fields, one renderer for everything.

* ``format="auto"`` (default): readable console output when stderr is a terminal, one JSON
  object per line otherwise; ``"json"`` / ``"console"`` force one.
* Under systemd (``$JOURNAL_STREAM`` names our stderr) each JSON line starts with the syslog
  priority, ``<6>{"event": ...}``, so ``journalctl -p warning`` filters by level.
* Standard-library loggers (websockets, aiohttp, asyncio) go through the same processors and
  renderer (structlog's ``ProcessorFormatter``).
* Values of keys that name a secret (``api_secret``, ``password``, ``signature``, ...) are
  replaced by ``"***"`` before rendering, whatever logged them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "json", "console")
# syslog priorities (RFC 5424) as sd-daemon(3) prefixes expect them
SYSLOG_PRIORITY = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "error": 3,
    "critical": 2,
    "exception": 3,
}
SECRET_KEY_RE = re.compile(
    r"(secret|passw|passphrase|token|signature|authorization|api_?key|credential)", re.I
)
MASK = "***"
# Keys that name where a secret comes from, not the secret itself.
_NOT_SECRET = frozenset({"api_key_env", "api_secret_env", "credentials_source"})
# Libraries chatty at DEBUG that we never want below INFO (one line per frame otherwise).
_QUIET_LIBRARIES = ("websockets", "aiohttp.access", "asyncio")


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace the value of every key that names a secret by ``***``."""
    for key in event_dict:
        if key not in _NOT_SECRET and SECRET_KEY_RE.search(key):
            event_dict[key] = MASK
    return event_dict


class JournalJSONRenderer:
    """JSON lines, optionally prefixed with ``<N>`` (the syslog priority of the level)."""

    def __init__(self, priority_prefix: bool) -> None:
        self.priority_prefix = priority_prefix

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> str:
        line = json.dumps(event_dict, default=repr, ensure_ascii=False, separators=(",", ":"))
        if not self.priority_prefix:
            return line
        level = str(event_dict.get("level", "info")).lower()
        return f"<{SYSLOG_PRIORITY.get(level, 6)}>{line}"


def journal_stream_is(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``$JOURNAL_STREAM`` (``device:inode``) names ``stream`` (systemd.exec(5))."""
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, AttributeError):
        return False


def configure(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
    journal: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure structlog and the standard ``logging`` root logger to write to ``stream``
    (default stderr). ``journal=None`` detects systemd's journal from ``$JOURNAL_STREAM``."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (valid: {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (valid: {', '.join(FORMATS)})")
    out = stream if stream is not None else sys.stderr
    env = os.environ if environ is None else environ
    numeric = logging.getLevelName(level.upper())
    if journal is None:
        journal = journal_stream_is(out, env)
    console = fmt == "console" or (fmt == "auto" and not journal and _isatty(out))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        redact_secrets,
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
    else:
        renderer = JournalJSONRenderer(priority_prefix=journal)
    tail: list[Processor] = [structlog.processors.format_exc_info] if not console else []

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("btse-collector")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "btse-collector"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared[:2],
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared[2:],
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
