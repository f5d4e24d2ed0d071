"""Event-loop lag monitor: how late a ``sleep(interval)`` wakes up.

A blocked event loop (a slow callback, CPU starvation, a synchronous call that should have
gone to a thread) delays every timer; the delay beyond the requested interval is the lag.
The monitor reports every sample to ``on_lag`` (e.g. ``HealthState.set_loop_lag`` and the
``event_loop_lag_seconds`` histogram). Clock and sleep are injectable for tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class LoopLagMonitor:
    def __init__(
        self,
        on_lag: Callable[[float], None],
        *,
        interval: float = 0.25,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"lag monitor interval must be > 0, got {interval}")
        self.on_lag = on_lag
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self.last: float | None = None
        self.max: float = 0.0
        self.samples = 0

    async def run(self) -> None:
        """Sample forever (cancel the task to stop)."""
        clock = self._clock or asyncio.get_running_loop().time
        while True:
            start = clock()
            await self._sleep(self.interval)
            self.record(max(0.0, clock() - start - self.interval))

    def record(self, lag: float) -> None:
        self.last = lag
        self.max = max(self.max, lag)
        self.samples += 1
        self.on_lag(lag)
