"""HealthState: per-stream freshness, writer and loop checks, the report and status line."""

from __future__ import annotations

import pytest

from collector.config import HealthConfig, StreamOverride, WatchdogConfig
from collector.service.health import HealthState, StreamKey

T0 = 1_790_000_000.0  # 2026-09-21T...


def state(**watchdog: float) -> HealthState:
    cfg = HealthConfig(
        overrides=(StreamOverride("spot", "ILLIQ-USD", 7200.0, "trades"),),
        watchdog=WatchdogConfig(**watchdog),
    )
    return HealthState(cfg, clock=lambda: T0, started=T0)


def test_fresh_streams_are_healthy() -> None:
    h = state()
    book = h.register_stream("spot", "book", "BTC-USD", "update:BTC-USD_0", now=T0)
    trades = h.register_stream("spot", "trades", "BTC-USD", "tradeHistoryApi:BTC-USD", now=T0)
    h.set_state(book, "live", T0)
    h.message(book, T0 + 5, count=10)
    h.flushed(T0 + 5)
    r = h.evaluate(T0 + 10)
    assert r.healthy and r.watchdog_ok and r.reasons == ()
    assert r.ages == {book: 5.0, trades: 10.0}
    assert (r.total, r.fresh, r.live) == (2, 2, 1)
    assert h.stream_for_topic("spot", "update:BTC-USD_0") == book


def test_a_silent_stream_goes_stale_at_its_own_threshold() -> None:
    h = state()
    book = h.register_stream("spot", "book", "BTC-USD", now=T0)
    trades = h.register_stream("spot", "trades", "ILLIQ-USD", now=T0)
    h.flushed(T0 + 59)
    # 61 s silent: the book (60 s) is stale, the illiquid trades stream (override 7200 s) is not
    r = h.evaluate(T0 + 61)
    assert not r.healthy and not r.watchdog_ok
    assert r.reasons == ("stale: spot BTC-USD book silent 61s > 60s",)
    stale = {s.key: s.fresh for s in r.streams}
    assert stale == {book: False, trades: True}
    h.message(book, T0 + 62)
    r = h.evaluate(T0 + 63)
    assert r.healthy


def test_watchdog_fraction_tolerates_some_stale_streams() -> None:
    h = state(min_fresh_fraction=0.5)
    a = h.register_stream("spot", "book", "A-USD", now=T0)
    h.register_stream("spot", "book", "B-USD", now=T0)
    h.message(a, T0 + 100)
    h.flushed(T0 + 100)
    r = h.evaluate(T0 + 101)
    assert not r.healthy  # /healthz stays strict
    assert r.watchdog_ok  # 1 of 2 fresh >= 0.5


def test_writer_checks() -> None:
    h = state(max_flush_age_s=30)
    r = h.evaluate(T0 + 31)
    assert not r.healthy and r.reasons == ("writer: no flush since start 31s ago > 30s",)
    h.flushed(T0 + 40)
    assert h.evaluate(T0 + 41).healthy
    h.set_writer_alive(False, "disk full")
    r = h.evaluate(T0 + 42)
    assert not r.watchdog_ok and r.reasons == ("writer: disk full",)


def test_loop_lag_and_queue_warning() -> None:
    h = state(max_loop_lag_s=1.0)
    h.flushed(T0)
    h.set_loop_lag(2.5)
    h.set_queue("frames", 95, 100)
    h.set_open_files(3)
    r = h.evaluate(T0 + 1)
    assert not r.healthy and not r.watchdog_ok
    assert r.reasons == ("event loop lag 2.50s > 1s",)
    assert r.warnings == ("queue frames 95/100 full",)
    j = r.to_json()
    assert j["queues"] == {"frames": {"depth": 95, "capacity": 100}}
    assert j["open_files"] == 3 and j["loop_lag_s"] == 2.5


def test_status_line_and_json() -> None:
    h = state()
    keys = [h.register_stream("spot", "book", s, now=T0) for s in ("A-USD", "B-USD", "C-USD")]
    h.set_states(keys, "live", T0)
    h.evaluate(T0)  # first rate sample
    for k in keys[:2]:
        h.message(k, T0 + 100, count=1700)
    h.flushed(T0 + 91.25)
    r = h.evaluate(T0 + 100)
    flush = "last flush " + __import__("datetime").datetime.fromtimestamp(
        T0 + 91.25, __import__("datetime").UTC
    ).strftime("%H:%M:%SZ")
    assert r.status_line() == f"2/3 streams live (1 stale), 34 msg/s, {flush}"
    j = r.to_json()
    assert j["healthy"] is False and j["streams_total"] == 3 and j["streams_fresh"] == 2
    assert j["streams"][2] == {
        "product": "spot",
        "kind": "book",
        "symbol": "C-USD",
        "topic": "",
        "state": "live",
        "fresh": False,
        "age_s": 100.0,
        "max_silence_s": 60.0,
        "last_message": None,
        "messages": 0,
    }
    assert j["last_flush_age_s"] == 8.75


def test_msg_rate_k_suffix() -> None:
    h = state()
    k = h.register_stream("spot", "book", "A-USD", now=T0)
    h.set_state(k, "live")
    h.evaluate(T0)
    h.message(k, T0 + 10, count=34_000)
    h.flushed(T0 + 10)
    assert h.evaluate(T0 + 10).status_line().startswith("1/1 streams live, 3.4k msg/s, last flush ")


def test_unknown_state_is_rejected() -> None:
    h = state()
    k = h.register_stream("spot", "book", "A-USD")
    with pytest.raises(ValueError, match="unknown stream state"):
        h.set_state(k, "zombie")
    h.unregister_stream(k)
    assert h.streams == ()
    assert isinstance(k, StreamKey) and k.label() == "spot A-USD book"
