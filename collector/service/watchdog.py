"""When to send ``WATCHDOG=1`` (pure policy: no clock, no socket).

systemd kills and restarts the service when ``WATCHDOG=1`` does not arrive within
``WatchdogSec``. We ping every ``interval`` seconds (half of ``$WATCHDOG_USEC``, as
``sd_watchdog_enabled(3)`` advises) **only while the last health report is watchdog-ok**:
event loop responsive, writer alive, enough streams fresh (see ``collector.service.health``).
A wedged process or a collector whose streams all went silent is therefore restarted by
systemd; a single illiquid symbol is not, thanks to per-stream thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatchdogDecision:
    ping: bool
    transition: str | None = None  # "withheld" when pings stop, "resumed" when they start again


class WatchdogPolicy:
    """Decide on each tick whether to ping; remembers when it last did."""

    def __init__(self, interval: float | None) -> None:
        if interval is not None and interval <= 0:
            raise ValueError(f"watchdog interval must be > 0, got {interval}")
        self.interval = interval
        self.last_ping: float | None = None
        self.withholding = False

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def decide(self, now: float, ok: bool) -> WatchdogDecision:
        if self.interval is None:
            return WatchdogDecision(False)
        if not ok:
            transition = None if self.withholding else "withheld"
            self.withholding = True
            return WatchdogDecision(False, transition)
        transition = "resumed" if self.withholding else None
        self.withholding = False
        if (
            transition is None
            and self.last_ping is not None
            and now - self.last_ping < self.interval
        ):
            return WatchdogDecision(False)
        self.last_ping = now
        return WatchdogDecision(True, transition)
