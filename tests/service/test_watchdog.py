"""The watchdog policy, the service ticker (watchdog + STATUS) and the loop-lag monitor."""

from __future__ import annotations

import asyncio

import pytest
from notify_helpers import NotifyListener

from collector.config import HealthConfig
from collector.service.health import HealthReport, HealthState
from collector.service.lag import LoopLagMonitor
from collector.service.sdnotify import Notifier
from collector.service.ticker import ServiceTicker
from collector.service.watchdog import WatchdogDecision, WatchdogPolicy

T0 = 1_790_000_000.0


def test_policy_pings_every_interval_only_while_ok() -> None:
    p = WatchdogPolicy(15.0)
    assert p.decide(T0, ok=True) == WatchdogDecision(True)
    assert p.decide(T0 + 14, ok=True) == WatchdogDecision(False)
    assert p.decide(T0 + 15, ok=True) == WatchdogDecision(True)
    assert p.decide(T0 + 16, ok=False) == WatchdogDecision(False, "withheld")
    assert p.decide(T0 + 40, ok=False) == WatchdogDecision(False)  # withheld once, not every tick
    assert p.decide(T0 + 41, ok=True) == WatchdogDecision(True, "resumed")  # at once on recovery
    assert p.decide(T0 + 42, ok=True) == WatchdogDecision(False)


def test_policy_disabled_without_interval() -> None:
    p = WatchdogPolicy(None)
    assert not p.enabled
    assert p.decide(T0, ok=True) == WatchdogDecision(False)
    with pytest.raises(ValueError):
        WatchdogPolicy(0)


def test_ticker_withholds_watchdog_while_a_stream_is_stale(notify_listener: NotifyListener) -> None:
    health = HealthState(HealthConfig(), clock=lambda: T0, started=T0)
    key = health.register_stream("spot", "book", "BTC-USD", now=T0)
    health.set_state(key, "live", T0)
    reports: list[HealthReport] = []
    with Notifier(notify_listener.env(watchdog_usec=30_000_000)) as notifier:
        ticker = ServiceTicker(health, notifier, on_report=reports.append, clock=lambda: T0)
        assert ticker.tick_s == 1.0
        for t in range(0, 121, 1):  # a 2-minute run with one tick per second
            now = T0 + t
            if t <= 30 or t >= 100:
                health.message(key, now)  # silent from 31 s to 99 s: stale from 91 s
            health.flushed(now)
            ticker.tick(now)
            notify_listener.drain()  # a datagram socket queues only ~10 messages
    msgs = notify_listener.received
    pings = [m for m in msgs if m == "WATCHDOG=1"]
    statuses = [m for m in msgs if m.startswith("STATUS=")]
    assert statuses[0].startswith("STATUS=1/1 streams live, ")
    assert any("(1 stale)" in s for s in statuses)  # the stale period is shown at once
    assert statuses[-1].startswith("STATUS=1/1 streams live")
    assert ticker.pings == len(pings)
    # pings at t=0, 15, 30, 45, 60, 75, 90 (stale from 91), resumed at 100, then 115
    healthy_at = [r.time - T0 for r in reports if r.watchdog_ok]
    assert [t for t in healthy_at if t in (90.0, 91.0, 99.0, 100.0)] == [90.0, 100.0]
    assert ticker.pings == 9


async def test_ticker_run_loop_uses_injected_sleep() -> None:
    health = HealthState(HealthConfig(), clock=lambda: T0, started=T0)
    ticks = 0

    async def fake_sleep(_: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 3:
            raise asyncio.CancelledError

    ticker = ServiceTicker(health, Notifier({}), clock=lambda: T0, sleep=fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await ticker.run()
    assert ticks == 3 and ticker.last_report is not None


async def test_lag_monitor_measures_late_wakeups() -> None:
    now = 100.0
    delays = iter([0.0, 0.3, 2.0])

    def clock() -> float:
        return now

    async def fake_sleep(interval: float) -> None:
        nonlocal now
        try:
            now += interval + next(delays)
        except StopIteration:
            raise asyncio.CancelledError from None

    seen: list[float] = []
    mon = LoopLagMonitor(seen.append, interval=0.25, clock=clock, sleep=fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await mon.run()
    assert seen == pytest.approx([0.0, 0.3, 2.0])
    assert mon.max == pytest.approx(2.0) and mon.samples == 3
    with pytest.raises(ValueError):
        LoopLagMonitor(seen.append, interval=0)


async def test_lag_monitor_on_the_real_loop_reports_samples() -> None:
    seen: list[float] = []
    got = asyncio.Event()

    def record(lag: float) -> None:
        seen.append(lag)
        got.set()

    task = asyncio.create_task(LoopLagMonitor(record, interval=0.001).run())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen and all(x >= 0.0 for x in seen)


def test_status_follows_live_streams_at_once_and_rate_changes_every_10s(
    notify_listener: NotifyListener,
) -> None:
    health = HealthState(HealthConfig(), clock=lambda: T0, started=T0)
    keys = [health.register_stream("spot", k, "BTC-USD", now=T0) for k in ("book", "l1")]
    notifier = Notifier(notify_listener.env())
    ticker = ServiceTicker(health, notifier, clock=lambda: T0)
    health.flushed(T0)
    health.set_state(keys[0], "live", T0)
    ticker.tick(T0)  # first tick: 1/2 live
    health.set_state(keys[1], "live", T0 + 1)
    ticker.tick(T0 + 1)  # 2/2 live: sent at once, not 10 s later
    for t in range(2, 12):  # only the rate and flush time change: at most every 10 s
        health.message(keys[0], T0 + t, 100 * t)
        health.flushed(T0 + t)
        ticker.tick(T0 + t)
    notifier.close()
    statuses = [m for m in notify_listener.drain() if m.startswith("STATUS=")]
    assert [s.split(",")[0] for s in statuses] == [
        "STATUS=1/2 streams live",
        "STATUS=2/2 streams live",
        "STATUS=2/2 streams live",
    ]
    assert " msg/s, last flush " in statuses[-1]
