"""Supervision policies: pure functions the connection workers consult, easy to swap and test.

``backoff()`` yields reconnect delays forever (exponential, capped, jittered): a collector never
gives up on a feed. ``classify(exc)`` decides what an exception means for a connection:
:class:`Retry` (reconnect after a delay, possibly a longer one) or :class:`Fatal` (the
configuration is wrong; restarting cannot help). Neither sleeps nor touches a socket.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from collector.errors import (
    AuthError,
    AuthLost,
    ConnectionLost,
    ExchangeError,
    FatalError,
    FeedError,
    StaleFeed,
)

# BTSE blocks an IP for 10 minutes after "abnormal usage" answered with HTTP 400 on the upgrade.
BLOCKED_FOR_S = 600.0
# An auth refusal will not fix itself in a second; retry slowly so keys can be rotated.
AUTH_RETRY_S = 60.0


@dataclass(frozen=True)
class Retry:
    """Reconnect. ``min_delay`` (seconds) raises the next backoff delay to at least this."""

    reason: str
    min_delay: float = 0.0


@dataclass(frozen=True)
class Fatal:
    """Stop this worker and report: the problem is in the configuration, not the network."""

    reason: str


Decision = Retry | Fatal


def backoff(
    initial: float = 0.5,
    cap: float = 30.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
    factor: float = 2.0,
) -> Iterator[float]:
    """Reconnect delays in seconds, forever: ``initial * factor**n`` capped at ``cap``.

    ``jitter`` in [0, 1] is the fraction of each delay that is randomized downwards
    (0: exact delays; 1: "full jitter", uniform in [0, delay]), so that many connections
    dropped at once do not reconnect in lockstep.
    """
    if initial <= 0 or cap < initial:
        raise ValueError(f"backoff needs 0 < initial <= cap, got initial={initial} cap={cap}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"backoff jitter must be in [0, 1], got {jitter}")
    if factor < 1.0:
        raise ValueError(f"backoff factor must be >= 1, got {factor}")
    draw = (rng or random.Random()).random
    delay = initial
    while True:
        yield delay * (1.0 - jitter * draw())
        delay = min(cap, delay * factor)


def classify(exc: BaseException) -> Decision:
    """What a connection worker does after ``exc`` ended a session."""
    if isinstance(exc, FatalError):
        return Fatal(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, AuthError):
        return Retry("auth_refused", min_delay=AUTH_RETRY_S)
    if isinstance(exc, StaleFeed):
        return Retry("stale")
    if isinstance(exc, AuthLost):
        # the login is gone, not refused: reconnect and log in again at the usual backoff
        # (reset after a healthy session, growing when BTSE keeps logging us out at once)
        return Retry("auth_lost")
    if isinstance(exc, ExchangeError):
        return Retry(f"exchange_error_{exc.code}")
    if isinstance(exc, ConnectionLost):
        return Retry("connection_lost")
    if isinstance(exc, FeedError):
        return Retry(type(exc).__name__.lower())
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status == 400:
            return Retry("handshake_400_blocked", min_delay=BLOCKED_FOR_S)
        if exc.status in (401, 403):
            return Retry(f"handshake_{exc.status}", min_delay=AUTH_RETRY_S)
        return Retry(f"handshake_{exc.status}")
    if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError | TimeoutError):
        return Retry(type(exc).__name__)
    if isinstance(exc, ValueError | UnicodeDecodeError):
        # a frame the transport could not accept (e.g. over max_msg_size): reconnect
        return Retry(type(exc).__name__)
    # Anything else is a bug in our code; keep collecting but make it visible in the reason.
    return Retry(f"unexpected_{type(exc).__name__}")
