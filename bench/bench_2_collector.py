"""Benchmark part 2: the whole collector on one core, frames → rows on disk.

The simulator runs in a **separate process, on the other core**, in benchmark mode: each
``update:`` subscriber gets a snapshot and ``FRAMES_PER_SYMBOL`` pre-built deltas written in
bulk, so the simulator is never the thing being measured. This process is pinned to one core.

- **ours**: the real daemon (``collector.service.daemon.Daemon``: aiohttp + uvloop receive,
  bounded queue, Normalizer, row buffers, raw rows, writer thread, Parquet store) from
  ``startup()`` until every frame is received and ``shutdown()`` has flushed, published and
  closed every file.
- **naive**: the same frames through a straightforward pipeline: ``websockets`` client on the
  default asyncio loop, ``json.loads``, dict book with ``float`` keys, best bid/ask by
  ``max``/``min``, one dict per row (book changes and raw), written to Parquet with
  ``pyarrow.Table.from_pylist`` every 50,000 rows.

Reported: process CPU time (all threads) per frame and frames per second of wall time (ours:
the better of two runs, both listed, after a warm-up run that pays the one-time imports of a
fresh process and is reported on its own; the machine is shared), the
ratio naive/ours, and the rows found on disk afterwards (read back with DuckDB).
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

TITLE = "whole collector on one core: simulator blasting deltas -> rows on disk"

SYMBOLS = ["BTC-USD", "ETH-USD"]
FRAMES_PER_SYMBOL = 150_000
TARGET_US = 6.0
OURS_RUNS = 2  # the whole collector is measured twice; the run with less CPU is reported
DEFAULT_GC = gc.get_threshold()


def _pin(cpu: int) -> int | None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        chosen = cpus[cpu % len(cpus)]
        os.sched_setaffinity(0, {chosen})
        return chosen
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return None


def _simulator_process(port_q: Any, stop: Any, frames: int) -> None:
    _pin(1)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from collector.simulator import Simulator

    async def main() -> None:
        async with Simulator(
            seed=5,
            symbols={"spot": SYMBOLS},
            rate=0,
            idle_timeout=0,
            benchmark_frames=frames,
            recent_trades=0,
        ) as sim:
            port_q.put(sim.urls)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


def _config(
    path: Path, data_dir: Path, urls: dict[str, str], queue_max: int, raw: bool = True
) -> Path:
    path.write_text(f"""
data_dir: {data_dir}
endpoints:
  spot: {urls["spot"]}
  spot_oss: {urls["spot_oss"]}
markets:
  - product: spot
    symbols: [{", ".join(SYMBOLS)}]
    channels: [book]
storage:
  flush_interval_s: 1
  raw: {"true" if raw else "false"}
pipeline:
  queue_max_frames: {queue_max}
health:
  listen: null
""")
    return path


async def _ours(
    urls: dict[str, str],
    work: Path,
    expected: int,
    raw: bool = True,
    receive_only: bool = False,
    run: int = 0,
) -> dict[str, Any]:
    from collector.config import load_config
    from collector.service.daemon import Daemon

    name = "ours" if raw else "ours-noraw" if not receive_only else "receive-only"
    data = work / f"{name}-{run}"
    config = load_config(_config(work / f"{data.name}.yaml", data, urls, expected + 10_000, raw))
    daemon = Daemon(config, install_signals=False, http=False, ready_timeout=30)
    cpu0, wall0, main0 = time.process_time(), time.perf_counter(), time.thread_time()
    await daemon.startup()
    startup_cpu = time.process_time() - cpu0
    proc = daemon.processor
    assert proc is not None
    if receive_only:  # measure the receive path alone: frames are received, queued, drained
        assert daemon.normalizer is not None
        daemon.normalizer.feed = lambda *frame: []  # type: ignore[method-assign]
        daemon.normalizer.feed_many = lambda frames, failed=None: []  # type: ignore[method-assign]
    while proc.frames < expected:
        await asyncio.sleep(0.01)
    wall_rx = time.perf_counter() - wall0
    await daemon.shutdown()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    main = time.thread_time() - main0
    assert daemon.exit_code == 0
    norm = daemon.normalizer
    assert norm is not None
    return {
        "frames": proc.frames,
        "cpu_s": cpu,
        "startup_cpu_s": startup_cpu,
        "main_thread_cpu_s": main,
        "wall_s": wall,
        "wall_receive_s": wall_rx,
        "shed_frames": proc.shed_frames,
        "gaps": norm.stats.gaps,
        "rows": dict(daemon.writer.stats.rows) if daemon.writer else {},
        "data": data,
    }


async def _naive(urls: dict[str, str], work: Path, expected: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from websockets.asyncio.client import connect

    data = work / "naive"
    data.mkdir(parents=True)
    books: dict[str, dict[str, dict[float, float]]] = {}
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    files = 0
    written = 0

    def write() -> None:
        nonlocal rows, raw, files, written
        if rows:
            pq.write_table(
                pa.Table.from_pylist(rows),
                data / f"book_changes-{files}.parquet",
                compression="zstd",
            )
            written += len(rows)
        if raw:
            pq.write_table(
                pa.Table.from_pylist(raw), data / f"raw-{files}.parquet", compression="zstd"
            )
        files += 1
        rows, raw = [], []

    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames = 0
    tops: list[tuple[float | None, float | None]] = []
    async with connect(urls["spot_oss"], max_size=2**22, ping_interval=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [f"update:{s}_0" for s in SYMBOLS]}))
        async for message in ws:
            ts = time.time_ns() // 1000
            raw.append({"local_timestamp": ts, "connection": "spot_oss#0", "frame": message})
            msg = json.loads(message)
            d = msg.get("data")
            if not isinstance(d, dict) or "seqNum" not in d:
                continue
            frames += 1
            sym = d["symbol"]
            snap = d["type"] == "snapshot"
            if snap or sym not in books:
                books[sym] = {"bid": {}, "ask": {}}
            book = books[sym]
            for side, key in (("bid", "bids"), ("ask", "asks")):
                levels = book[side]
                for price_s, size_s in d[key]:
                    price, size = float(price_s), float(size_s)
                    if size == 0:
                        levels.pop(price, None)
                    else:
                        levels[price] = size
                    rows.append(
                        {
                            "exchange": "btse",
                            "symbol": sym,
                            "timestamp": d["timestamp"] * 1000,
                            "local_timestamp": ts,
                            "is_snapshot": snap,
                            "side": side,
                            "price": price,
                            "amount": size,
                            "seq": d["seqNum"],
                        }
                    )
            tops.append(
                (
                    max(book["bid"]) if book["bid"] else None,
                    min(book["ask"]) if book["ask"] else None,
                )
            )
            if len(rows) >= 50_000:
                write()
            if frames >= expected:
                break
    write()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"frames": frames, "cpu_s": cpu, "wall_s": wall, "rows": {"book_changes": written}}


def _rows_on_disk(data: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    out = {}
    for table in ("book_changes", "raw"):
        rows = con.execute(
            f"SELECT count(*) FROM read_parquet('{data}/{table}/**/*.parquet', hive_partitioning=true)"
        ).fetchall()
        out[table] = int(rows[0][0])
    return out


def run() -> dict[str, Any]:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from collector.commands.run import new_event_loop

    ctx = mp.get_context("spawn")
    port_q, stop = ctx.Queue(), ctx.Event()
    sim = ctx.Process(
        target=_simulator_process, args=(port_q, stop, FRAMES_PER_SYMBOL), daemon=True
    )
    sim.start()
    core = _pin(0)
    work = Path(tempfile.mkdtemp(prefix="btse-bench2-"))
    expected = len(SYMBOLS) * (FRAMES_PER_SYMBOL + 1)  # snapshot + deltas per symbol
    try:
        urls = port_q.get(timeout=300)
        loop = new_event_loop()
        try:
            # a first run in this fresh process imports what the daemon loads lazily (aiohttp,
            # pyarrow.compute/parquet, ... ~230 modules, ~0.4 s CPU): reported, not compared
            first = loop.run_until_complete(_ours(urls, work, expected, run=-1))
            first.pop("data")
            # best of OURS_RUNS: the machine is shared, a run can lose CPU to other processes
            runs = [
                loop.run_until_complete(_ours(urls, work, expected, run=i))
                for i in range(OURS_RUNS)
            ]
            ours = min(runs, key=lambda r: r["cpu_s"])
            noraw = loop.run_until_complete(_ours(urls, work, expected, raw=False))
            rx = loop.run_until_complete(_ours(urls, work, expected, raw=False, receive_only=True))
        finally:
            loop.close()
        on_disk = _rows_on_disk(ours.pop("data"))
        for r in runs:
            r.pop("data", None)
        noraw.pop("data")
        rx.pop("data")
        # the daemon tuned the garbage collector (collector.service.daemon.tune_gc): give the
        # naive pipeline Python's defaults back, as it would run on its own
        gc.unfreeze()
        gc.set_threshold(*DEFAULT_GC)
        naive = asyncio.run(_naive(urls, work, expected))
    finally:
        stop.set()
        sim.join(timeout=10)
        if sim.is_alive():
            sim.terminate()
        shutil.rmtree(work, ignore_errors=True)

    assert ours["shed_frames"] == 0 and ours["gaps"] == 0, ours
    assert on_disk["raw"] == ours["frames"], (on_disk, ours["frames"])
    assert on_disk["book_changes"] == ours["rows"]["book_changes"], (on_disk, ours["rows"])
    us_ours = ours["cpu_s"] / ours["frames"] * 1e6
    us_naive = naive["cpu_s"] / naive["frames"] * 1e6
    fps_ours = ours["frames"] / ours["wall_s"]
    us_main = ours["main_thread_cpu_s"] / ours["frames"] * 1e6
    us_noraw = noraw["cpu_s"] / noraw["frames"] * 1e6
    us_rx = rx["main_thread_cpu_s"] / rx["frames"] * 1e6
    fps_naive = naive["frames"] / naive["wall_s"]
    result: dict[str, Any] = {
        "frames": ours["frames"],
        "symbols": SYMBOLS,
        "collector_core": core,
        "ours": {
            "cpu_us_per_frame": round(us_ours, 2),
            "frames_per_s": round(fps_ours),
            "cpu_us_per_frame_event_loop_thread": round(us_main, 2),
            "cpu_us_per_frame_writer_thread": round(us_ours - us_main, 2),
            "cpu_s": round(ours["cpu_s"], 3),
            "wall_s": round(ours["wall_s"], 3),
            "rows_written": ours["rows"],
            "rows_on_disk": on_disk,
            "shed_frames": ours["shed_frames"],
            "runs_cpu_us_per_frame": [round(r["cpu_s"] / r["frames"] * 1e6, 2) for r in runs],
            "first_run_in_fresh_process_cpu_us_per_frame": round(
                first["cpu_s"] / first["frames"] * 1e6, 2
            ),
            # Daemon.startup() of each run (specs, validators, store recovery, connections):
            # one-time work, paid again only by the first run of a fresh process in full
            "runs_startup_cpu_s": [round(r["startup_cpu_s"], 3) for r in runs],
        },
        "ours_without_raw_table": {
            "cpu_us_per_frame": round(us_noraw, 2),
            "frames_per_s": round(noraw["frames"] / noraw["wall_s"]),
        },
        "receive_path_only": {
            "cpu_us_per_frame_event_loop_thread": round(us_rx, 2),
            "what": "aiohttp+uvloop receive, time stamp, bounded queue, drain; no decoding, no rows",
        },
        "naive": {
            "cpu_us_per_frame": round(us_naive, 2),
            "frames_per_s": round(fps_naive),
            "cpu_s": round(naive["cpu_s"], 3),
            "wall_s": round(naive["wall_s"], 3),
            "rows_written": naive["rows"],
        },
        "ratio_naive_over_ours": round(us_naive / us_ours, 2),
        "target_cpu_us_per_frame": TARGET_US,
        "meets_target": us_ours <= TARGET_US,
    }
    result["summary"] = [
        f"{ours['frames']} frames ({len(SYMBOLS)} books), simulator in another process on another core",
        f"ours (daemon, aiohttp+uvloop, Parquet on disk; best of {OURS_RUNS} runs "
        f"{result['ours']['runs_cpu_us_per_frame']}): {us_ours:.2f} CPU us/frame, "
        f"{fps_ours:,.0f} frames/s (target <= {TARGET_US}: {'met' if us_ours <= TARGET_US else 'NOT met'})",
        f"  startup() CPU of each run: {result['ours']['runs_startup_cpu_s']} s (included above); "
        f"a first, warm-up run in the fresh process (one-time imports): "
        f"{result['ours']['first_run_in_fresh_process_cpu_us_per_frame']} us/frame",
        f"  of which event-loop thread (receive, queue, decode, books, rows) {us_main:.2f}, "
        f"writer thread (Arrow, journal, Parquet+zstd) {us_ours - us_main:.2f}",
        f"ours without the raw table (storage.raw: false): {us_noraw:.2f} CPU us/frame",
        f"receive path alone (aiohttp+uvloop, stamp, queue, drain): {us_rx:.2f} CPU us/frame",
        f"naive (websockets + json + dicts + row dicts): {us_naive:.2f} CPU us/frame, "
        f"{fps_naive:,.0f} frames/s -> {us_naive / us_ours:.1f}x ours",
        f"rows on disk (DuckDB): {on_disk}",
    ]
    return result


if __name__ == "__main__":  # pragma: no cover
    for line in run()["summary"]:
        print(line)
