"""The generic checks of config values: shapes, names, numbers, symbols, paths.

A :class:`Checker` collects every problem (file, line, dotted key, message, suggestion)
instead of stopping at the first; each check returns the checked value or ``None``.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from collector.config.yaml_lines import KeyPath, LineDoc, dotted
from collector.errors import ConfigProblem

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


def suggest(word: str, valid: Sequence[str]) -> str | None:
    """The nearest valid name for a typo (``symbls`` -> ``symbols``), or ``None``."""
    hits = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return hits[0] if hits else None


class Checker:
    def __init__(self, file: str, doc: LineDoc) -> None:
        self.file = file
        self.doc = doc
        self.problems: list[ConfigProblem] = []

    def problem(self, path: KeyPath, message: str, suggestion: str | None = None) -> None:
        self.problems.append(
            ConfigProblem(self.file, self.doc.line(path), dotted(path), message, suggestion)
        )

    # -- shapes

    def mapping(
        self, path: KeyPath, value: Any, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Check that ``value`` is a mapping with only ``allowed`` keys; returns it (or {})."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {kind_of(value)}")
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

    def seq(self, path: KeyPath, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return [value]  # a single item where a list is expected: accept it
        self.problem(path, f"expected a list, got {kind_of(value)}")
        return []

    def string(self, path: KeyPath, value: Any) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.problem(path, f"expected a non-empty string, got {kind_of(value)}")
        return None

    def choice(
        self, path: KeyPath, value: Any, valid: Sequence[str], what: str = "value"
    ) -> str | None:
        if isinstance(value, str) and value in valid:
            return value
        shown = value if isinstance(value, str | int | float) else kind_of(value)
        hint = suggest(value, valid) if isinstance(value, str) else None
        if isinstance(value, str) and hint is None and value.lower() in valid:
            hint = value.lower()
        self.problem(path, f"unknown {what} {shown!r} (valid: {', '.join(valid)})", hint)
        return None

    def number(
        self,
        path: KeyPath,
        value: Any,
        lo: float,
        hi: float,
        *,
        integer: bool,
        lo_open: bool = False,
    ) -> float | int | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            want = "an integer" if integer else "a number"
            self.problem(path, f"expected {want}, got {kind_of(value)}")
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

    def symbol(self, path: KeyPath, value: Any) -> str | None:
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

    def path_value(self, path: KeyPath, value: Any) -> Path | None:
        text = self.string(path, value)
        if text is None:
            return None
        if "\x00" in text:
            self.problem(path, "path contains a NUL byte")
            return None
        return Path(text).expanduser()

    # -- generic flat sections (numbers and booleans with ranges from field metadata)

    def section(self, path: KeyPath, value: Any, cls: type[Any]) -> Any:
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
                    self.problem(fpath, f"expected true or false, got {kind_of(v)}")
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


def kind_of(value: Any) -> str:
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


def field_names(cls: type[Any]) -> list[str]:
    return [f.name for f in fields(cls)]
