"""The daemon as systemd sees it, against the simulator: the notify socket (a real AF_UNIX
datagram socket) receives READY, STATUS, WATCHDOG and STOPPING in order; a stalled OSS
connection makes its streams stale, which withholds WATCHDOG=1, turns ``/healthz`` 503 (stream
named), shows in ``/metrics`` and in ``btse-collector status`` (exit 1), until the connection is
replaced and everything is fresh again."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e_helpers import NotifySocket, db, until
from prometheus_client.parser import text_string_to_metric_families

from collector.commands.demo import simulator_config
from collector.config import load_config
from collector.service.daemon import Daemon
from collector.simulator import Simulator

pytestmark = pytest.mark.e2e

SYMBOLS = {"spot": ["BTC-USD"], "futures": ["BTC-PERP"]}
WATCHDOG_USEC = 600_000  # pings every 0.3 s while healthy
MAX_SILENCE_S = 1.0  # book and l1 streams are stale after 1 s without a message
# a silent socket is detected by a missing pong: 2.5 to 4.5 s after the stall began, i.e. the
# streams are stale (after 1 s) well before the connection is replaced
SETTINGS = f"""storage:
  flush_interval_s: 0.2
connection:
  ping_interval_s: 2.5
  pong_timeout_s: 2
  stale_after_s: 8
  backoff_initial_s: 0.02
  backoff_max_s: 0.2
pipeline:
  batch_max_delay_s: 0.05
health:
  listen: "127.0.0.1:0"
  max_silence_s: {{book: {MAX_SILENCE_S}, l1: {MAX_SILENCE_S}, trades: 60}}
  watchdog: {{max_flush_age_s: 5}}
"""
STATUS_RE = re.compile(
    r"^(\d+)/(\d+) streams live(?: \((\d+) stale\))?(?:, ([\d.]+[kM]?) msg/s)?, "
    r"(?:last flush (\d\d:\d\d:\d\d)Z|no flush yet)$"
)


class DaemonNotifySocket(NotifySocket):
    """Also records, when READY=1 arrives, what the in-process daemon had done by then."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.daemon: Daemon | None = None
        self.ready_state: dict[str, Any] = {}

    def received(self, lines: tuple[str, ...]) -> None:
        d = self.daemon
        if "READY=1" in lines and d is not None and d.supervisor and d.processor:
            self.ready_state = {
                "ready_event": d.ready.is_set(),
                "connections": set(d.supervisor.connections),
                "acked": set(d.processor.acked),
                "store_open": d.store is not None,
            }


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _stream(kind: str) -> tuple[tuple[str, str], ...]:
    return (("kind", kind), ("product", "futures"), ("symbol", "BTC-PERP"))


async def _status_cli(url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collector",
        "status",
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_notify_sequence_watchdog_health_metrics_and_status_through_a_stall(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    notify = DaemonNotifySocket(tmp_path / "notify.sock")
    notify.start()
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    try:
        async with (
            Simulator(seed=3, symbols=SYMBOLS, rate=100) as sim,
            aiohttp.ClientSession() as http,
        ):
            cfg_path = tmp_path / "collector.yaml"
            cfg_path.write_text(simulator_config(data, sim.urls, SYMBOLS, SETTINGS))
            daemon = Daemon(load_config(cfg_path), environ=env, install_signals=False)
            notify.daemon = daemon
            await daemon.startup()
            assert daemon.ready.is_set() and daemon.http is not None
            url = daemon.http.url

            async def healthz() -> tuple[int, dict[str, Any]]:
                async with http.get(url + "/healthz") as resp:
                    return resp.status, await resp.json()

            async def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                async with http.get(url + "/metrics") as resp:
                    assert resp.status == 200
                    return _metrics(await resp.text())

            # -- healthy: every stream live, watchdog fed, status table exit 0
            async def is_healthy() -> bool:
                code, body = await healthz()
                return code == 200 and body["streams_live"] == body["streams_total"] == 6

            await _until_async(is_healthy, "/healthz 200 with 6/6 streams live")
            await until(lambda: len(notify.values("WATCHDOG")) >= 3, "three WATCHDOG=1")
            code, text = await _status_cli(url)
            assert code == 0, text
            assert f"btse-collector at {url}: HEALTHY - 6/6 streams live" in text
            rows = [line.split() for line in text.splitlines() if line.startswith(("spot", "fut"))]
            assert sorted((r[0], r[1], r[2], r[3], r[4]) for r in rows) == sorted(
                (p, k, s, "live", "yes")
                for p, syms in SYMBOLS.items()
                for s in syms
                for k in ("book", "trades", "l1")
            )
            before = await metrics()
            last_book_before = before[
                ("btse_collector_stream_last_message_timestamp_seconds", _stream("book"))
            ]

            # -- stall the futures OSS socket: its book and l1 streams go stale
            sup = daemon.supervisor
            assert sup is not None
            fut_oss = sup.connections["futures_oss#0"]
            sessions = fut_oss.stats.sessions
            sim.inject("stall", server="futures_oss", seconds=30)
            stall_at = time.time()
            pings_at_stall = len(notify.values("WATCHDOG"))
            notes_at_stall = len(notify.notes)

            stale_body: dict[str, Any] = {}

            async def is_stale() -> bool:  # both streams of the stalled socket
                code, body = await healthz()
                stale_body.update(body)
                silent = {(s["kind"], s["symbol"]) for s in body["streams"] if not s["fresh"]}
                return code == 503 and {("book", "BTC-PERP"), ("l1", "BTC-PERP")} <= silent

            await _until_async(is_stale, "/healthz 503 during the stall")
            assert fut_oss.stats.sessions == sessions, "connection replaced before it went stale"
            assert any("stale: futures BTC-PERP book silent" in r for r in stale_body["reasons"]), (
                stale_body
            )
            assert stale_body["watchdog_ok"] is False
            stale_streams = {
                (s["product"], s["kind"], s["symbol"])
                for s in stale_body["streams"]
                if not s["fresh"]
            }
            assert ("futures", "book", "BTC-PERP") in stale_streams
            assert stale_streams <= {("futures", "book", "BTC-PERP"), ("futures", "l1", "BTC-PERP")}
            during = await metrics()
            # still the stalled socket (replaced 2 to 4.5 s into the stall, stale after 1 s)
            assert fut_oss.stats.sessions == sessions
            assert during[("btse_collector_stream_fresh", _stream("book"))] == 0.0
            assert during[("btse_collector_healthy", ())] == 0.0
            assert (
                during[("btse_collector_stream_silence_seconds", _stream("book"))] > MAX_SILENCE_S
            )
            code, text = await _status_cli(url)
            assert code == 1, text
            assert f"btse-collector at {url}: UNHEALTHY" in text
            assert re.search(r"^futures\s+book\s+BTC-PERP\s+\S+\s+STALE\s", text, re.M), text
            assert "problems:\n  - stale: futures BTC-PERP book silent" in text

            # -- the silent socket is replaced (missing pong), the streams are fresh again
            await until(
                lambda: fut_oss.stats.reasons.get("stale", 0) >= 1, "stalled connection replaced"
            )
            await _until_async(is_healthy, "/healthz 200 again after the reconnect")

            await until(
                lambda: len(notify.values("WATCHDOG")) >= pings_at_stall + 2,
                "WATCHDOG=1 resumed",
            )

            async def reconnect_counted() -> bool:
                m = await metrics()
                key = (
                    "btse_collector_reconnects_total",
                    (("reason", "stale"), ("server", "futures_oss")),
                )
                return m.get(key, 0.0) >= 1

            await _until_async(reconnect_counted, "reconnects_total{reason=stale} on /metrics")
            after = await metrics()
            assert after[("btse_collector_stream_fresh", _stream("book"))] == 1.0
            assert after[("btse_collector_healthy", ())] == 1.0
            assert (
                after[("btse_collector_stream_last_message_timestamp_seconds", _stream("book"))]
                > stall_at
                > last_book_before
            )
            code, text = await _status_cli(url)
            assert code == 0, text

            daemon.request_stop()
            await daemon.shutdown()
            assert daemon.exit_code == 0
            stop_done = time.time()
            await asyncio.sleep(0)  # let the reader take the last datagram
            notify.read()
    finally:
        notify.close()

    notes = notify.notes
    # -- READY first, only once every connection's subscription was acknowledged
    assert notes and "READY=1" in notes[0].lines, notes[:3]
    assert len(notify.values("READY")) == 1
    rs = notify.ready_state
    assert rs["ready_event"] and rs["store_open"]
    assert rs["connections"] and rs["connections"] <= rs["acked"], rs
    con = db(data)
    first_sub = con.execute(
        "SELECT connection, min(epoch_us(local_timestamp)) FROM events "
        "WHERE kind = 'subscribed' GROUP BY 1"
    ).fetchall()
    assert {c for c, _ in first_sub} >= rs["connections"]
    assert all(us / 1e6 <= notes[0].at for c, us in first_sub if c in rs["connections"])

    # -- STOPPING last, nothing after it
    assert "STOPPING=1" in notes[-1].lines, notes[-3:]
    assert len(notify.values("STOPPING")) == 1
    assert notes[-1].at <= stop_done

    # -- WATCHDOG only while healthy. The ticker sends STATUS whenever health flips, after its
    # watchdog decision of the same tick: between the first "(N stale)" line and the next line
    # without it there must be no WATCHDOG=1, and the ping right before that line resumes them.
    watchdog = notify.values("WATCHDOG")
    assert all(v == "1" for _, v in watchdog)
    status = notify.values("STATUS")
    parsed = [(i, v, STATUS_RE.match(v)) for i, v in status[:-1]]  # the last goes with STOPPING
    assert all(m for _, _, m in parsed), [v for _, v, m in parsed if not m]
    assert status[-1][1].startswith("stopping") and status[-1][0] == len(notes) - 1
    stale_idx = next(i for i, _, m in parsed if m and m.group(3))
    healthy_idx = next(i for i, _, m in parsed if i > stale_idx and m and not m.group(3))
    assert stale_idx >= notes_at_stall  # nothing was stale before the stall
    pings = [i for i, _ in watchdog]
    assert len([i for i in pings if i < stale_idx]) >= 3  # fed while healthy before the stall
    assert not [i for i in pings if stale_idx <= i < healthy_idx - 1], "WATCHDOG=1 while stale"
    assert healthy_idx - 1 in pings  # resumed in the tick that found the streams fresh again
    assert len([i for i in pings if i > healthy_idx]) >= 1
    # systemd (WatchdogSec = WATCHDOG_USEC) would have acted on this silence
    assert notes[healthy_idx].at - notes[stale_idx].at > WATCHDOG_USEC / 1e6

    # -- STATUS: one human line; the stall shows ("4/6 streams live (2 stale)"), then 6/6
    stale_lines = [m for i, _, m in parsed if m and m.group(3)]
    # only the stalled socket's streams (futures BTC-PERP book and l1) were ever stale
    assert all(
        m.group(3) in ("1", "2") and int(m.group(1)) + int(m.group(3)) <= 6 for m in stale_lines
    ), [m.group(0) for m in stale_lines]
    final = [m for i, _, m in parsed if m and i > healthy_idx and m.group(1) == m.group(2) == "6"]
    full = final[-1] if final else next(m for i, _, m in parsed if i == healthy_idx)
    assert full is not None
    assert full.group(5) is not None, full.group(0)  # "last flush HH:MM:SSZ"
    # order: READY, then pings and status lines, STOPPING last
    assert 0 < pings[0] < stale_idx < healthy_idx < len(notes) - 1


async def _until_async(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)
