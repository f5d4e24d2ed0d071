"""Where the collector's own data files are: ``specs/`` and ``schemas/``.

A checkout (and an editable install) reads them at the root of the repository, next to
``collector/``; a wheel (plain ``pip install``) carries a copy in ``collector/_data/`` (setup.py
puts it there). An environment variable overrides both (``BTSE_COLLECTOR_SPECS``,
``BTSE_COLLECTOR_SCHEMAS``).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str, env: str, pattern: str) -> Path:
    """``$env`` if set; else ``<repo>/<name>`` when it holds ``pattern`` files (a checkout);
    else the copy bundled in the installed package (``collector/_data/<name>``)."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    checkout = _PACKAGE.parent / name
    if any(checkout.glob(pattern)):
        return checkout
    bundled = _PACKAGE / "_data" / name
    return bundled if bundled.is_dir() else checkout
