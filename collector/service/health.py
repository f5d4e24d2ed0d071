"""Health state of the running collector (pure; the caller passes the time).

The daemon reports what happens — a stream registered, messages seen, a state change, a flush,
queue depths, open files, event-loop lag — and :meth:`HealthState.evaluate` turns it into a
:class:`HealthReport`: healthy or not, why, and the details ``/healthz`` and ``status`` show.

Rules (thresholds from ``config.health``):

* a stream is **fresh** while it has been silent (since its last message, or since it was
  registered if it never had one) no longer than its threshold: per channel kind
  (book 60 s, l1 120 s, trades 3600 s, otc_quote 60 s by default) or a per-symbol override;
* the **writer** is ok while it is alive and its last flush (or start) is at most
  ``watchdog.max_flush_age_s`` old — the daemon reports every flush cycle, empty ones too;
* the **event loop** is ok while its measured lag is at most ``watchdog.max_loop_lag_s``.

``healthy`` (``/healthz`` 200) needs all three and *every* stream fresh. ``watchdog_ok`` (feed
the systemd watchdog) needs the loop and the writer ok and at least
``watchdog.min_fresh_fraction`` of the streams fresh (default 1.0: all of them).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from collector.config import HealthConfig

STATES = ("syncing", "live", "resyncing", "stale", "down")
RATE_WINDOW_S = 60.0
QUEUE_WARN_FRACTION = 0.9


class StreamKey(NamedTuple):
    """A stream: product, channel kind (book, l1, trades, otc_quote), symbol and topic."""

    product: str
    kind: str
    symbol: str
    topic: str

    def label(self) -> str:
        return f"{self.product} {self.symbol} {self.kind}"


@dataclass
class _Stream:
    key: StreamKey
    max_silence_s: float
    registered_at: float
    state: str = "syncing"
    state_since: float = 0.0
    last_message: float | None = None
    messages: int = 0


@dataclass(frozen=True)
class StreamReport:
    key: StreamKey
    state: str
    fresh: bool
    age_s: float  # seconds since the last message (or since registration if none yet)
    max_silence_s: float
    last_message: float | None  # epoch seconds
    messages: int

    def to_json(self) -> dict[str, Any]:
        return {
            "product": self.key.product,
            "kind": self.key.kind,
            "symbol": self.key.symbol,
            "topic": self.key.topic,
            "state": self.state,
            "fresh": self.fresh,
            "age_s": round(self.age_s, 3),
            "max_silence_s": self.max_silence_s,
            "last_message": _iso(self.last_message),
            "messages": self.messages,
        }


@dataclass(frozen=True)
class QueueReport:
    depth: int
    capacity: int | None


@dataclass(frozen=True)
class HealthReport:
    time: float
    healthy: bool
    watchdog_ok: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    streams: tuple[StreamReport, ...]
    queues: Mapping[str, QueueReport]
    last_flush: float | None
    writer_alive: bool
    open_files: int
    loop_lag_s: float | None
    msg_rate: float | None
    started: float

    @property
    def total(self) -> int:
        return len(self.streams)

    @property
    def fresh(self) -> int:
        return sum(1 for s in self.streams if s.fresh)

    @property
    def live(self) -> int:
        return sum(1 for s in self.streams if s.fresh and s.state == "live")

    @property
    def ages(self) -> dict[StreamKey, float]:
        return {s.key: s.age_s for s in self.streams}

    @property
    def last_flush_age_s(self) -> float | None:
        return None if self.last_flush is None else max(0.0, self.time - self.last_flush)

    def status_line(self) -> str:
        """One human line for systemd's ``STATUS=``, e.g.
        ``12/12 streams live, 3.4k msg/s, last flush 14:02:11Z``."""
        parts = [f"{self.live}/{self.total} streams live"]
        stale = self.total - self.fresh
        if stale:
            parts[0] += f" ({stale} stale)"
        if self.msg_rate is not None:
            parts.append(f"{_si(self.msg_rate)} msg/s")
        if self.last_flush is not None:
            parts.append(
                "last flush " + datetime.fromtimestamp(self.last_flush, UTC).strftime("%H:%M:%SZ")
            )
        else:
            parts.append("no flush yet")
        text = ", ".join(parts)
        problems = [r for r in self.reasons if not r.startswith("stale:")]
        if problems:
            text += "; " + "; ".join(problems)
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "watchdog_ok": self.watchdog_ok,
            "status": self.status_line(),
            "time": _iso(self.time),
            "uptime_s": round(max(0.0, self.time - self.started), 3),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "streams_total": self.total,
            "streams_fresh": self.fresh,
            "streams_live": self.live,
            "msg_rate": None if self.msg_rate is None else round(self.msg_rate, 1),
            "last_flush": _iso(self.last_flush),
            "last_flush_age_s": _round(self.last_flush_age_s),
            "writer_alive": self.writer_alive,
            "open_files": self.open_files,
            "loop_lag_s": _round(self.loop_lag_s),
            "queues": {
                name: {"depth": q.depth, "capacity": q.capacity} for name, q in self.queues.items()
            },
            "streams": [s.to_json() for s in self.streams],
        }


@dataclass
class HealthState:
    """What the daemon knows about itself; ``evaluate(now)`` judges it. Not thread-safe:
    call it from the event loop only."""

    config: HealthConfig = field(default_factory=HealthConfig)
    clock: Callable[[], float] = time.time
    started: float = -1.0

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()
        self._streams: dict[StreamKey, _Stream] = {}
        self._by_topic: dict[tuple[str, str], StreamKey] = {}
        self._queues: dict[str, QueueReport] = {}
        self._last_flush: float | None = None
        self._writer_alive = True
        self._writer_error: str | None = None
        self._open_files = 0
        self._loop_lag: float | None = None
        self._total_messages = 0
        self._rate_samples: deque[tuple[float, int]] = deque()

    # -- streams

    def register_stream(
        self,
        product: str,
        kind: str,
        symbol: str,
        topic: str = "",
        *,
        max_silence_s: float | None = None,
        now: float | None = None,
    ) -> StreamKey:
        """Start tracking a stream (idempotent). Its silence counts from now."""
        key = StreamKey(product, kind, symbol, topic)
        if key not in self._streams:
            t = self.clock() if now is None else now
            limit = (
                max_silence_s
                if max_silence_s is not None
                else self.config.threshold(product, kind, symbol)
            )
            self._streams[key] = _Stream(key, limit, t, state_since=t)
            if topic:
                self._by_topic[(product, topic)] = key
        return key

    def unregister_stream(self, key: StreamKey) -> None:
        self._streams.pop(key, None)
        self._by_topic.pop((key.product, key.topic), None)

    def stream_for_topic(self, product: str, topic: str) -> StreamKey | None:
        return self._by_topic.get((product, topic))

    @property
    def streams(self) -> tuple[StreamKey, ...]:
        return tuple(self._streams)

    def set_state(self, key: StreamKey, state: str, now: float | None = None) -> None:
        """Record a state change: syncing, live, resyncing, stale or down."""
        if state not in STATES:
            raise ValueError(f"unknown stream state {state!r} (valid: {', '.join(STATES)})")
        s = self._streams[key]
        if s.state != state:
            s.state = state
            s.state_since = self.clock() if now is None else now

    def set_states(self, keys: Iterable[StreamKey], state: str, now: float | None = None) -> None:
        for key in keys:
            self.set_state(key, state, now)

    def message(self, key: StreamKey, now: float, count: int = 1) -> None:
        """``count`` messages arrived on ``key`` at ``now`` (call per batch, not per frame)."""
        s = self._streams[key]
        if s.last_message is None or now > s.last_message:
            s.last_message = now
        s.messages += count
        self._total_messages += count

    # -- pipeline, writer, loop

    def set_queue(self, name: str, depth: int, capacity: int | None = None) -> None:
        self._queues[name] = QueueReport(depth, capacity)

    def flushed(self, now: float | None = None) -> None:
        """A flush cycle finished (report empty ones too: it proves the writer is alive)."""
        self._last_flush = self.clock() if now is None else now

    def set_writer_alive(self, alive: bool, error: str | None = None) -> None:
        self._writer_alive = alive
        self._writer_error = None if alive else (error or "writer stopped")

    def set_open_files(self, count: int) -> None:
        self._open_files = count

    def set_loop_lag(self, seconds: float) -> None:
        self._loop_lag = seconds

    # -- judgement

    def evaluate(self, now: float | None = None) -> HealthReport:
        t = self.clock() if now is None else now
        wd = self.config.watchdog
        reasons: list[str] = []
        warnings: list[str] = []

        streams = []
        for s in self._streams.values():
            since = s.last_message if s.last_message is not None else s.registered_at
            age = max(0.0, t - since)
            fresh = age <= s.max_silence_s
            streams.append(
                StreamReport(
                    s.key, s.state, fresh, age, s.max_silence_s, s.last_message, s.messages
                )
            )
            if not fresh:
                silent = f"{age:.0f}" if age >= 10 else f"{age:.1f}"  # not "1s > 1s"
                reasons.append(f"stale: {s.key.label()} silent {silent}s > {s.max_silence_s:g}s")
        fresh_count = sum(1 for r in streams if r.fresh)
        fraction = fresh_count / len(streams) if streams else 1.0

        writer_ok = True
        if not self._writer_alive:
            writer_ok = False
            reasons.append(f"writer: {self._writer_error}")
        else:
            since_flush = self._last_flush if self._last_flush is not None else self.started
            if t - since_flush > wd.max_flush_age_s:
                writer_ok = False
                what = "last flush" if self._last_flush is not None else "no flush since start"
                reasons.append(
                    f"writer: {what} {t - since_flush:.0f}s ago > {wd.max_flush_age_s:g}s"
                )

        loop_ok = self._loop_lag is None or self._loop_lag <= wd.max_loop_lag_s
        if not loop_ok:
            reasons.append(f"event loop lag {self._loop_lag:.2f}s > {wd.max_loop_lag_s:g}s")

        for name, q in self._queues.items():
            if q.capacity and q.depth >= QUEUE_WARN_FRACTION * q.capacity:
                warnings.append(f"queue {name} {q.depth}/{q.capacity} full")

        healthy = writer_ok and loop_ok and fresh_count == len(streams)
        watchdog_ok = writer_ok and loop_ok and fraction >= wd.min_fresh_fraction
        return HealthReport(
            time=t,
            healthy=healthy,
            watchdog_ok=watchdog_ok,
            reasons=tuple(reasons),
            warnings=tuple(warnings),
            streams=tuple(streams),
            queues=dict(self._queues),
            last_flush=self._last_flush,
            writer_alive=self._writer_alive,
            open_files=self._open_files,
            loop_lag_s=self._loop_lag,
            msg_rate=self._rate(t),
            started=self.started,
        )

    def _rate(self, now: float) -> float | None:
        samples = self._rate_samples
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, self._total_messages))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_S:
            samples.popleft()
        t0, n0 = samples[0]
        if now - t0 < 1.0:
            return None
        return (self._total_messages - n0) / (now - t0)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _si(x: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.1f}{suffix}"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"
