import itertools
import random

import aiohttp
import pytest

from collector.errors import (
    AuthError,
    AuthLost,
    ConfigError,
    ConnectionLost,
    CredentialsError,
    ExchangeError,
    StaleFeed,
)
from collector.feed.policies import AUTH_RETRY_S, BLOCKED_FOR_S, Fatal, Retry, backoff, classify


def test_backoff_without_jitter_doubles_up_to_the_cap_and_never_ends() -> None:
    delays = list(itertools.islice(backoff(initial=0.5, cap=8.0, jitter=0.0), 200))
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert delays[-1] == 8.0
    assert len(delays) == 200


def test_backoff_jitter_stays_within_bounds_and_is_seeded() -> None:
    a = list(itertools.islice(backoff(1.0, 16.0, 0.5, random.Random(7)), 50))
    b = list(itertools.islice(backoff(1.0, 16.0, 0.5, random.Random(7)), 50))
    assert a == b
    nominal = [min(16.0, 2.0**i) for i in range(50)]
    for got, nom in zip(a, nominal, strict=True):
        assert nom * 0.5 <= got <= nom
    assert len(set(a)) > 40  # actually jittered


def test_full_jitter_can_reach_zero_but_not_exceed() -> None:
    rng = random.Random(1)
    delays = list(itertools.islice(backoff(1.0, 4.0, 1.0, rng), 500))
    assert min(delays) < 0.1
    assert max(delays) <= 4.0


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"initial": 0}, "initial"),
        ({"initial": 5, "cap": 1}, "initial"),
        ({"jitter": 1.5}, "jitter"),
        ({"factor": 0.5}, "factor"),
    ],
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        next(backoff(**kwargs))


def test_classify_config_and_credentials_are_fatal() -> None:
    assert isinstance(classify(ConfigError([])), Fatal)
    decision = classify(CredentialsError("BTSE_OTC_API_KEY is not set"))
    assert isinstance(decision, Fatal)
    assert "BTSE_OTC_API_KEY" in decision.reason


@pytest.mark.parametrize(
    ("exc", "reason", "min_delay"),
    [
        (ConnectionLost("spot#0", "closed", 1006), "connection_lost", 0.0),
        (StaleFeed("spot#0", 50.0, 45.0), "stale", 0.0),
        (ExchangeError(1007, "User message buffer is full."), "exchange_error_1007", 0.0),
        (AuthError("otc", "login refused"), "auth_refused", AUTH_RETRY_S),
        # logged out mid-session (10002): log in again at the usual backoff, not the refusal wait
        (AuthLost("otc#0", 10002, "User session is expired"), "auth_lost", 0.0),
        (ConnectionRefusedError(), "ConnectionRefusedError", 0.0),
        (TimeoutError(), "TimeoutError", 0.0),
        (aiohttp.ClientConnectionError("x"), "ClientConnectionError", 0.0),
        (RuntimeError("bug"), "unexpected_RuntimeError", 0.0),
    ],
)
def test_classify_network_problems_retry(exc: BaseException, reason: str, min_delay: float) -> None:
    assert classify(exc) == Retry(reason, min_delay)


def test_classify_http_400_on_upgrade_waits_out_the_block() -> None:
    exc = aiohttp.WSServerHandshakeError(None, (), status=400, message="bad")  # type: ignore[arg-type]
    assert classify(exc) == Retry("handshake_400_blocked", BLOCKED_FOR_S)
    exc = aiohttp.WSServerHandshakeError(None, (), status=503, message="down")  # type: ignore[arg-type]
    assert classify(exc) == Retry("handshake_503", 0.0)
