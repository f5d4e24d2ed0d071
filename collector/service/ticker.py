"""The service heartbeat: evaluates health on a fixed tick, feeds the systemd watchdog while
healthy, keeps ``STATUS=`` current and logs health transitions (never one line per tick).

The daemon starts ``ServiceTicker(...).run()`` as a task after ``READY=1``; tests call
:meth:`ServiceTicker.tick` with explicit times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from collector.service.health import HealthReport, HealthState
from collector.service.sdnotify import Notifier
from collector.service.watchdog import WatchdogPolicy

log = structlog.get_logger(__name__)


class ServiceTicker:
    def __init__(
        self,
        health: HealthState,
        notifier: Notifier,
        *,
        tick_s: float = 1.0,
        status_every_s: float = 10.0,
        watchdog: WatchdogPolicy | None = None,
        on_report: Callable[[HealthReport], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.health = health
        self.notifier = notifier
        self.watchdog = watchdog or WatchdogPolicy(notifier.watchdog_interval())
        interval = self.watchdog.interval
        # tick at least 4x per watchdog interval so a ping is never late
        self.tick_s = min(tick_s, interval / 4) if interval else tick_s
        self.status_every_s = status_every_s
        self.on_report = on_report
        self._clock = clock
        self._sleep = sleep
        self._last_status: tuple[float, str] | None = None
        self._last_shape: tuple[object, ...] = ()
        self._healthy: bool | None = None
        self.pings = 0
        self.last_report: HealthReport | None = None

    def tick(self, now: float | None = None) -> HealthReport:
        t = self._clock() if now is None else now
        report = self.health.evaluate(t)
        self.last_report = report
        decision = self.watchdog.decide(t, report.watchdog_ok)
        if decision.ping and self.notifier.watchdog():
            self.pings += 1
        if decision.transition == "withheld":
            log.warning("watchdog_withheld", reasons=list(report.reasons))
        elif decision.transition == "resumed":
            log.info("watchdog_resumed")
        health_changed = report.healthy != self._healthy
        if health_changed:
            if report.healthy:
                log.info("health_ok", streams=report.total)
            else:
                log.warning("health_degraded", reasons=list(report.reasons))
            self._healthy = report.healthy
        text = report.status_line()
        last = self._last_status
        # what an operator acts on (streams live/fresh, problems) is sent at once; the
        # ever-changing rate and flush time at most every ``status_every_s``
        shape = (report.live, report.fresh, report.total, report.healthy, report.watchdog_ok)
        if (
            last is None
            or shape != self._last_shape
            or (text != last[1] and t - last[0] >= self.status_every_s)
        ):
            self.notifier.status(text)
            self._last_status = (t, text)
        self._last_shape = shape
        if self.on_report is not None:
            self.on_report(report)
        return report

    async def run(self) -> None:
        """Tick forever (cancel the task to stop)."""
        while True:
            self.tick()
            await self._sleep(self.tick_s)
