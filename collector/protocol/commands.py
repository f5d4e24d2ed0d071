"""Commands the normalizer returns to the feed (what the network side should do or know)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """Unsubscribe and subscribe ``topic`` again on ``conn_id`` (gap or crossed book)."""

    conn_id: str
    topic: str
    reason: str  # "gap" | "crossed"


@dataclass(frozen=True, slots=True)
class ExchangeErrorSeen:
    """BTSE sent an error frame entry (e.g. 1000 unknown market, 1007 buffer full)."""

    conn_id: str
    code: int | None
    message: str
    topic: str | None


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The login ack of ``authKeyExpires``."""

    conn_id: str
    success: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Pong:
    """The server answered a ``ping``."""

    conn_id: str
    local_ts: int


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A subscribe/unsubscribe ack: ``topics`` are those BTSE accepted (failed ones are omitted)."""

    conn_id: str
    op: str
    topics: tuple[str, ...]


Command = Resubscribe | ExchangeErrorSeen | AuthResult | Pong | Acknowledged
