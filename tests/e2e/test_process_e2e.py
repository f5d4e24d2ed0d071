"""The collector as a real process (``python -m collector run``): SIGKILL mid-write several
times, then restart and SIGTERM. Only the store (DuckDB) and the process's log are read."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from e2e_helpers import FUTURES, SPOT, NotifySocket, db, rebuild_books, write_config

from collector.protocol import native
from collector.simulator import Simulator

pytestmark = pytest.mark.e2e


class Collector:
    """A collector subprocess whose JSON log lines are parsed as they come."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = None if env is None else {**os.environ, **env}
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collector",
            "run",
            "--config",
            str(self.config),
            "--no-http",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "text", "line": line.decode(errors="replace")})
            self._changed.set()

    async def wait_log(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        count: int = 1,
        timeout: float = 30.0,
    ) -> None:
        async def waiting() -> None:
            while sum(1 for e in self.events if predicate(e)) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(waiting(), timeout)
        except TimeoutError:
            tail = "\n".join(json.dumps(e) for e in self.events[-15:])
            raise AssertionError(f"collector never logged {what}; last lines:\n{tail}") from None

    async def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        return code


def _every_file_readable(data: Path) -> int:
    files = sorted(data.rglob("*.parquet"))
    for f in files:
        duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()
    assert not [
        f for f in data.rglob("*") if f.name.endswith(".parquet") and f.name.startswith(".")
    ]
    return len(files)


async def test_sigkill_mid_write_then_restart_recovers_and_sigterm_flushes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # recent_trades: the batch re-sent on subscribe reaches back past the restart gap
    async with Simulator(
        seed=11, symbols={"spot": SPOT, "futures": FUTURES}, rate=300, recent_trades=500
    ) as sim:
        config = write_config(tmp_path / "c.yaml", data, sim.urls, flush_s=0.1, extra="")
        text = config.read_text().replace(
            "  flush_interval_s: 0.1", "  flush_interval_s: 0.1\n  rotate_interval_s: 1"
        )
        config.write_text(text)
        for _ in range(3):
            collector = Collector(config)
            await collector.start()
            # kill while it is writing: after a few flushes that made rows durable
            await collector.wait_log(
                lambda e: e.get("event") == "store_flushed" and (e.get("rows") or 0) > 0,
                "a flush with rows",
                count=3,
            )
            assert await collector.stop(signal.SIGKILL) == -signal.SIGKILL
            _every_file_readable(data)
            assert list(data.rglob("*.journal")) or list(data.rglob(".*")), (
                "nothing left to recover"
            )

        # the last run as systemd starts it: a real notify socket (no watchdog)
        notify = NotifySocket(tmp_path / "notify.sock")
        notify.start()
        collector = Collector(config, env={"NOTIFY_SOCKET": notify.path})
        await collector.start()
        await collector.wait_log(lambda e: e.get("event") == "store_opened", "store_opened")
        opened = next(e for e in collector.events if e.get("event") == "store_opened")
        assert opened["recovered"] >= 1
        await collector.wait_log(lambda e: e.get("event") == "collector_ready", "collector_ready")
        starting = next(e for e in collector.events if e.get("event") == "collector_starting")
        # the daemon runs the C speedups `make` built (or the twins, as this test process does)
        assert starting["protocol_core"] == native.implementation()
        await collector.wait_log(
            lambda e: e.get("event") == "book_synced",
            "books synced",
            count=len(SPOT) + len(FUTURES),
        )
        assert [n.lines[0] for n in notify.notes[:1]] == ["READY=1"]
        # exit 0: the whole shutdown finished within the daemon's own timeout (20 s, else 1)
        assert await collector.stop(signal.SIGTERM) == 0
        stopped = next(e for e in collector.events if e.get("event") == "collector_stopped")
        notify.read()
        notify.close()
    lines = [line for n in notify.notes for line in n.lines]
    assert lines.count("READY=1") == 1 and lines.count("STOPPING=1") == 1
    assert "STOPPING=1" in notify.notes[-1].lines  # sent first thing on SIGTERM, nothing after
    assert not [e for e in collector.events if e.get("event") == "sd_notify_failed"]

    assert _every_file_readable(data) > 0
    assert not list(data.rglob("*.journal")) and not list(data.rglob("*.tmp"))
    con = db(data)
    kinds = dict(con.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    assert kinds.get("recovered", 0) >= 1
    # four runs on one store: the recent trades re-sent after each subscribe were stored once
    # (each start seeds the de-duplication with the newest stored trade, recovered journals included)
    dups = con.execute(
        "SELECT product, symbol, id, count(*) FROM trades GROUP BY ALL HAVING count(*) > 1"
    ).fetchall()
    assert dups == []
    # the last run's batches reached back into what the killed run had stored: dropped as seen
    assert stopped["trade_duplicates"] > 0
    # everything the last run received was flushed: its raw rows are all there
    last_run = con.execute(
        "SELECT count(*) FROM raw WHERE local_timestamp >= (SELECT max(local_timestamp) FROM events "
        "WHERE kind = 'connected') - INTERVAL 2 SECOND"
    ).fetchall()
    assert last_run[0][0] >= stopped["frames"] > 0
    # every file replays on its own: each book_changes file starts with a snapshot
    for f in sorted((data / "book_changes").rglob("*.parquet")):
        first = (
            duckdb.connect()
            .execute(f"SELECT is_snapshot FROM read_parquet('{f}') LIMIT 1")
            .fetchall()
        )
        assert first in ([(True,)], []), f  # [] : the empty schema anchor file
    assert set(rebuild_books(con)) == {("spot", s, 0) for s in SPOT} | {
        ("futures", s, 0) for s in FUTURES
    }
