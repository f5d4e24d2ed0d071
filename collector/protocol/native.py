"""Which implementation of the protocol core's hot path runs: the C speedups or pure Python.

``collector/protocol/_speedups.c`` (built by ``setup.py`` when a C compiler is there) speeds up
the per-frame work: applying a delta to a book, buffering its ``book_changes`` rows and its
``quotes`` row, and the exactness scan. Every piece has a pure-Python twin with the same
behaviour (the tests run both and compare them). ``speedups`` is the C module, or ``None``
when it is not built or when ``BTSE_COLLECTOR_PURE_PYTHON=1`` is set in the environment.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from collector.errors import SpeedupsUnavailable

ENV_PURE_PYTHON = "BTSE_COLLECTOR_PURE_PYTHON"


def _disabled() -> bool:
    return os.environ.get(ENV_PURE_PYTHON, "").strip() not in ("", "0")


def _load() -> ModuleType | None:
    if _disabled():
        return None
    try:
        return importlib.import_module("collector.protocol._speedups")
    except ImportError:
        return None


speedups: ModuleType | None = _load()


def implementation() -> str:
    """``"c"`` or ``"python"``: what the hot path runs by default."""
    return "c" if speedups is not None else "python"


def use_speedups(wanted: bool | None) -> bool:
    """Resolve a ``speedups=`` argument: None means "if built"; True requires them."""
    if wanted is None:
        return speedups is not None
    if wanted and speedups is None:
        raise SpeedupsUnavailable(
            f"disabled by {ENV_PURE_PYTHON}"
            if _disabled()
            else "not built (reinstall with a C compiler: pip install -e .)"
        )
    return wanted
