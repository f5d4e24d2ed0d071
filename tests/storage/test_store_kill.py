"""SIGKILL a writing process at random moments, several times: the store stays complete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import duckdb

from collector.storage import Store

CHILD = Path(__file__).with_name("kill_writer.py")


def test_sigkill_mid_write_leaves_a_readable_complete_store(tmp_path: Path) -> None:
    rng = random.Random(20240501)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    confirmed = 0
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), str(round_)],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        started = proc.stdout.readline().split()
        assert started[0] == "started"
        # Everything confirmed durable before the previous kill was recovered and published.
        assert int(started[1]) >= confirmed + 1
        for _ in range(rng.randint(3, 40)):  # kill after a random number of flushes ...
            line = proc.stdout.readline()
            assert line.startswith("flushed"), line
            confirmed = int(line.split()[1])
        for _ in range(rng.randint(0, 2000)):  # ... at a random point of the next one
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        # No partial file is ever visible: DuckDB reads every *.parquet file, even before recovery.
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/**/*.parquet', union_by_name=true)").fetchall()
    Store(tmp_path).close()  # recovery of the last crash
    ids = [r[0] for r in duckdb.sql(
        f"SELECT id::BIGINT FROM read_parquet('{tmp_path}/trades/**/*.parquet', hive_partitioning=true) ORDER BY 1"
    ).fetchall()]
    assert ids == list(range(1, len(ids) + 1))  # no hole, no duplicate
    assert len(ids) >= confirmed  # nothing confirmed durable was lost
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".btse-collector.lock"]
    # The kills did land mid-file: open journals were recovered, and each is an event.
    [(recovered,)] = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/events/**/*.parquet') WHERE kind = 'recovered'"
    ).fetchall()
    assert recovered >= 3
