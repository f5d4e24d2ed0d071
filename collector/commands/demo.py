"""``btse-collector demo``: the simulated exchange and the collector, in one process, for ~30 s.

A few faults are injected on a schedule (a lost delta, a crossed book, a duplicate, an abrupt
disconnect, a stalled connection, a malformed frame); then the store is read back with DuckDB
(the shipped views and macros) and the command prints rows per table, each book rebuilt from
``book_changes`` next to the simulator's ground truth, and every hole with how it was healed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from collector import logs

HELP = (
    "run the simulator and the collector for ~30 s with injected faults, then show what DuckDB sees"
)

SYMBOLS = {"spot": ["BTC-USD", "ETH-USD"], "futures": ["BTC-PERP"]}
# (kind, fraction of the run, selectors/params)
SCHEDULE: list[tuple[str, float, dict[str, Any]]] = [
    ("gap", 0.15, {"product": "spot", "symbol": "BTC-USD"}),
    ("crossed", 0.30, {"product": "futures", "symbol": "BTC-PERP"}),
    ("dup", 0.40, {"product": "spot", "symbol": "ETH-USD"}),
    ("disconnect", 0.50, {"server": "spot_oss"}),
    ("stall", 0.55, {"server": "futures_oss", "seconds": 3.0}),
    ("malformed", 0.65, {"server": "spot"}),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="how long to collect (default 30)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the store goes (default: a new temporary folder)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="simulated market events per second per symbol (default 50)",
    )
    parser.add_argument("--seed", type=int, default=1)


def simulator_config(
    data_dir: Path, urls: Mapping[str, str], symbols: Mapping[str, Sequence[str]], settings: str
) -> str:
    """A collector config whose endpoints are the simulator's, for ``symbols`` (book, trades,
    L1), followed by the YAML ``settings`` sections. Also used by the end-to-end tests."""
    endpoints = "".join(
        f"  {name}: {url}\n"
        for name, url in sorted(urls.items())
        if name in ("spot", "spot_oss", "futures", "futures_oss", "otc")
    )
    markets = "".join(
        f"  - product: {product}\n    symbols: [{', '.join(syms)}]\n    channels: [book, trades, l1]\n"
        for product, syms in symbols.items()
        if product != "otc"
    )
    return (
        f"# written by btse-collector\ndata_dir: {data_dir}\nendpoints:\n{endpoints}"
        f"markets:\n{markets}{settings}"
    )


DEMO_SETTINGS = """storage:
  flush_interval_s: 1
book:
  snapshot_interval_s: 5
connection:
  ping_interval_s: 1
  pong_timeout_s: 1
  stale_after_s: 5
  backoff_initial_s: 0.05
  backoff_max_s: 1
pipeline:
  batch_max_delay_s: 0.1
health:
  listen: null
"""


def progress_marks(seconds: float, every: float = 5.0) -> list[float]:
    """When the demo prints a progress line: every ``every`` s, and once at the end."""
    marks = [every * i for i in range(1, int(seconds // every) + 1)]
    if not marks or marks[-1] < seconds:
        marks.append(seconds)
    return marks


async def _collect(args: argparse.Namespace, data_dir: Path) -> Any:
    from collector.config import load_config
    from collector.service.daemon import Daemon
    from collector.simulator import Simulator

    seconds = max(5.0, float(args.seconds))
    faults = [(kind, round(frac * seconds, 2), params) for kind, frac, params in SCHEDULE]
    async with Simulator(seed=args.seed, symbols=SYMBOLS, rate=args.rate, faults=faults) as sim:
        config_path = data_dir / "demo-config.yaml"
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(simulator_config(data_dir, sim.urls, SYMBOLS, DEMO_SETTINGS))
        daemon = Daemon(load_config(config_path), install_signals=False, ready_timeout=10)
        print(f"simulator on {sim.urls['spot_oss'].rsplit('/ws', 1)[0]}, store in {data_dir}")
        print("faults: " + ", ".join(f"{k}@{t:g}s" for k, t, _ in faults))
        await daemon.startup()
        started = time.monotonic()
        try:
            for mark in progress_marks(seconds):
                # asyncio.sleep may wake a hair early (timer resolution): one line per mark
                while (remaining := started + mark - time.monotonic()) > 0:
                    await asyncio.sleep(remaining)
                proc, writer = daemon.processor, daemon.writer
                assert proc is not None and writer is not None
                print(
                    f"  t={time.monotonic() - started:4.0f}s  frames={proc.frames:>7}  "
                    f"rows={sum(writer.stats.rows.values()):>8}  "
                    f"faults so far={len(sim.truth.faults)}",
                    flush=True,
                )
        finally:
            await daemon.shutdown()
        return sim.truth


def _report(data_dir: Path, truth: Any) -> int:
    from collector.storage.query import connect, format_rows, run

    con = connect(data_dir)
    print("\n== rows per table")
    counts = []
    for table in ("book_changes", "quotes", "book_snapshots", "trades", "events", "raw"):
        n = con.execute(f"SELECT count(*) FROM {table}").fetchall()
        counts.append((table, n[0][0] if n else 0))
    print(format_rows(["table", "rows"], counts, "table"))

    print("\n== books rebuilt from book_changes (book_at macro) vs the simulator's truth")
    ok_all = True
    rows: list[tuple[Any, ...]] = []
    for product, symbols in SYMBOLS.items():
        for symbol in symbols:
            levels = con.execute(
                "SELECT side, price, amount, seq FROM book_at(?, ?, now())", [product, symbol]
            ).fetchall()
            if not levels:
                rows.append((product, symbol, None, 0, "no data"))
                ok_all = False
                continue
            # the book's last seqNum (a level the last delta deleted is not in book_at's output)
            last = con.execute(
                "SELECT max(seq) FROM book_changes WHERE product = ? AND symbol = ? "
                "AND grouping = 0",
                [product, symbol],
            ).fetchall()
            seq = int(last[0][0]) if last and last[0][0] is not None else max(r[3] for r in levels)
            true = truth.book(product, symbol, 0, seq=seq)
            rebuilt_bids = {r[1]: r[2] for r in levels if r[0] == "bid"}
            rebuilt_asks = {r[1]: r[2] for r in levels if r[0] == "ask"}
            same = rebuilt_bids == {float(p): float(a) for p, a in true.bids} and rebuilt_asks == {
                float(p): float(a) for p, a in true.asks
            }
            ok_all &= same
            best = (
                f"{max(rebuilt_bids)} / {min(rebuilt_asks)}"
                if rebuilt_bids and rebuilt_asks
                else "-"
            )
            rows.append(
                (
                    product,
                    symbol,
                    seq,
                    len(levels),
                    f"{'MATCH' if same else 'DIFFERS'}  best {best}",
                )
            )
    print(format_rows(["product", "symbol", "last seq", "levels", "vs truth"], rows, "table"))

    print("\n== holes and how they were healed (gaps macro)")
    columns, gap_rows = run(
        con,
        """
        SELECT kind, coalesce(symbol, connection) AS "book or connection",
               strftime(started, '%H:%M:%S.%g') AS started,
               round(epoch(healed_at) - epoch(started), 3) AS healed_after_s, detail
        FROM gaps('1970-01-01', now() + INTERVAL 1 DAY)
        WHERE coalesce(detail, '') <> 'shutdown'""",
    )
    short = [tuple((str(v)[:60] if v is not None else "-") for v in r) for r in gap_rows]
    print(format_rows(columns, short, "table") if short else "(none)")
    print(f'\nQuery it yourself: btse-collector query --data-dir {data_dir} "SELECT * FROM events"')
    return 0 if ok_all else 1


def main(args: argparse.Namespace) -> int:
    if getattr(args, "log_level", "info") == "info":
        logs.configure(level="error")  # the demo prints its own summary
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="btse-demo-"))
    from collector.commands.run import new_event_loop

    loop = new_event_loop()  # uvloop, as `run` uses
    try:
        truth = loop.run_until_complete(_collect(args, data_dir))
    finally:
        loop.close()
    return _report(data_dir, truth)
