"""The faults the simulated exchange can inject, and the ``KIND@SECONDS[:k=v,...]`` syntax.

Market faults (chosen by product/symbol; default: every market):

``gap``        the next ``count`` deltas of a chain are not sent; the true book still changes.
``dup``        the last delta of each chain is sent again (an old seqNum).
``crossed``    a delta whose bid crosses the best ask; it takes the next seqNum but is not part
               of the true book (the truth book stays sane). BTSE's rule applies: the client
               resubscribes and receives a fresh snapshot of the true book.
``rename``     frames spell the futures symbol by its legacy alias (``BTCPFC`` for
               ``BTC-PERP``) for ``seconds`` (default: until ``rename`` with ``off=true``).

Connection faults (chosen by product, ``server`` name, or symbol held; default: every
connection):

``disconnect`` abrupt close: the TCP connection is dropped without a close frame.
``stall``      ``seconds`` of silence: nothing is sent, pings get no pong, input is ignored.
``malformed``  one non-JSON frame and one frame that violates the payload schema.
``error1007``  the buffer-full error frame, then the connection is closed.
``slow``       for ``seconds``, every frame is delayed by ``delay`` seconds.
``huge``       one oversize text frame of ``size`` bytes (default 2 MiB > the usual 1 MiB cap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MARKET_FAULTS = ("gap", "dup", "crossed", "rename")
CONNECTION_FAULTS = ("disconnect", "stall", "malformed", "error1007", "slow", "huge")
FAULT_KINDS = MARKET_FAULTS + CONNECTION_FAULTS

DEFAULTS: dict[str, dict[str, Any]] = {
    "gap": {"count": 1},
    "dup": {},
    "crossed": {},
    "rename": {"seconds": None, "off": False},
    "disconnect": {},
    "stall": {"seconds": 10.0},
    "malformed": {},
    "error1007": {},
    "slow": {"seconds": 5.0, "delay": 0.05},
    "huge": {"size": 2 * 1024 * 1024 + 1},
}
SELECTORS = ("product", "symbol", "server", "grouping")


class FaultSpecError(ValueError):
    """A fault description that cannot be used; names the text and the problem."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(f"fault {text!r}: {problem}")


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float = 0.0  # seconds after start, for scheduled faults
    product: str | None = None
    symbol: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def check_fault(kind: str, params: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    """Validate a kind and its params; returns params with defaults filled in."""
    where = text if text is not None else kind
    if kind not in FAULT_KINDS:
        raise FaultSpecError(where, f"unknown kind {kind!r}; valid: {', '.join(FAULT_KINDS)}")
    allowed = set(DEFAULTS[kind]) | set(SELECTORS)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise FaultSpecError(where, f"unknown parameter(s) {', '.join(unknown)} for {kind}; "
                                    f"valid: {', '.join(sorted(allowed))}")
    merged = {**DEFAULTS[kind], **params}
    for name in ("seconds", "delay", "count", "size"):
        value = merged.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value < 0):
            raise FaultSpecError(where, f"{name} must be a non-negative number, got {value!r}")
    return merged


def parse_fault(text: str) -> Fault:
    """``"gap@5"``, ``"stall@10:seconds=3,product=spot"`` -> :class:`Fault`."""
    head, _, tail = text.partition(":")
    kind, sep, when = head.partition("@")
    if not sep:
        raise FaultSpecError(text, "expected KIND@SECONDS[:key=value,...]")
    try:
        at = float(when)
    except ValueError:
        raise FaultSpecError(text, f"time {when!r} is not a number of seconds") from None
    if at < 0:
        raise FaultSpecError(text, "time must not be negative")
    params: dict[str, Any] = {}
    if tail:
        for item in tail.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise FaultSpecError(text, f"parameter {item!r} is not key=value")
            params[key.strip()] = _coerce(value.strip())
    product = params.pop("product", None)
    symbol = params.pop("symbol", None)
    check_fault(kind, params, text)
    return Fault(kind, at, product, symbol, params)
