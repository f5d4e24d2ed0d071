"""One canonical symbol per market: legacy futures aliases folded into today's names.

BTSE still serves pre-April-2023 futures names on OSS and on legacy trade topics, and folds
the markets-API spelling ``<BASE>-PERP-USDT`` into the same subscription as ``<BASE>-PERP``
(reference §3.0, §3.4.2). Every row is written under the canonical symbol:

=================  ==============  =====================================================
wire symbol        canonical       why
=================  ==============  =====================================================
``BTCPFC``         ``BTC-PERP``    legacy futures name (pre-April 2023), still on the wire
``ETHPFC``         ``ETH-PERP``    legacy futures name
``<X>-PERP-USDT``  ``<X>-PERP``    markets-API spelling, folded by BTSE into ``<X>-PERP``
anything else      unchanged
=================  ==============  =====================================================
"""

from __future__ import annotations

LEGACY_ALIASES: dict[str, str] = {
    "BTCPFC": "BTC-PERP",
    "ETHPFC": "ETH-PERP",
}

_PERP_USDT = "-PERP-USDT"

_cache: dict[str, str] = {}


def canonical_symbol(symbol: str) -> str:
    """The canonical market symbol for a wire symbol (see the module table)."""
    found = _cache.get(symbol)
    if found is not None:
        return found
    result = LEGACY_ALIASES.get(symbol)
    if result is None:
        result = symbol[: -len("-USDT")] if symbol.endswith(_PERP_USDT) else symbol
    if len(_cache) < 100_000:  # bounded: symbols are few, but never trust the wire
        _cache[symbol] = result
    return result
