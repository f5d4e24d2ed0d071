"""Helpers for the end-to-end tests: configs pointing at the simulator, and reading the store
back with DuckDB only."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from collector.commands.demo import simulator_config

SPOT = ["BTC-USD", "ETH-USD"]
FUTURES = ["BTC-PERP"]


def write_config(
    path: Path, data_dir: Path, urls: Mapping[str, str], *, flush_s: float = 0.2, extra: str = ""
) -> Path:
    """A config with fast intervals so faults are detected and healed within seconds."""
    settings = f"""storage:
  flush_interval_s: {flush_s}
connection:
  ping_interval_s: 1
  pong_timeout_s: 1
  stale_after_s: 5
  backoff_initial_s: 0.02
  backoff_max_s: 0.2
  max_frame_bytes: 65536
pipeline:
  batch_max_delay_s: 0.05
health:
  listen: null
{extra}"""
    path.write_text(simulator_config(data_dir, urls, {"spot": SPOT, "futures": FUTURES}, settings))
    return path


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition of the system under test (polled), failing with ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


def db(data_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in ("book_changes", "trades", "events", "raw", "quotes", "otc_quotes"):
        files = list((data_dir / table).rglob("*.parquet"))
        if files:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                f"'{data_dir}/{table}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
            )
    return con


def rebuild_books(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Final book per (product, symbol, grouping) from book_changes, resetting at each snapshot."""
    rows = con.execute(
        "SELECT product, symbol, grouping, seq, is_snapshot, side, price, amount "
        "FROM book_changes ORDER BY product, symbol, grouping, seq, is_snapshot DESC"
    ).fetchall()
    books: dict[tuple[str, str, int], dict[str, Any]] = {}
    for product, symbol, grouping, seq, is_snapshot, side, price, amount in rows:
        key = (product, symbol, int(grouping))
        book = books.setdefault(key, {"bid": {}, "ask": {}, "seq": None, "snap_seq": None})
        if is_snapshot and book["snap_seq"] != seq:
            book["bid"], book["ask"], book["snap_seq"] = {}, {}, seq
        if not is_snapshot and book["snap_seq"] is None:
            raise AssertionError(f"{key}: delta seq {seq} stored before any snapshot")
        levels = book["bid" if side == "bid" else "ask"]
        if amount == 0:
            levels.pop(price, None)
        else:
            levels[price] = amount
        book["seq"] = seq
    return books


def deltas_continue_their_snapshot(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every stored delta's prev_seq is the seq stored just before it (per book)."""
    rows = con.execute(
        "SELECT DISTINCT product, symbol, grouping, seq, prev_seq, is_snapshot FROM book_changes "
        "ORDER BY product, symbol, grouping, seq, is_snapshot DESC"
    ).fetchall()
    problems = []
    last: dict[tuple[str, str, int], int] = {}
    for product, symbol, grouping, seq, prev_seq, is_snapshot in rows:
        key = (product, symbol, int(grouping))
        if not is_snapshot and key in last and prev_seq != last[key] and seq != last[key]:
            problems.append(
                f"{key}: delta {seq} has prev {prev_seq}, stored before it: {last[key]}"
            )
        last[key] = seq
    return problems


@dataclass(frozen=True)
class Note:
    at: float  # wall time of reception
    lines: tuple[str, ...]


class NotifySocket:
    """A real ``$NOTIFY_SOCKET`` (AF_UNIX datagram) read by the running event loop: every
    datagram is taken as soon as the loop gets to it (the kernel queues only ~10, see
    ``net.unix.max_dgram_qlen``) and stamped with the time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.notes: list[Note] = []

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.read)

    def read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            lines = tuple(data.decode().split("\n"))
            self.received(lines)
            self.notes.append(Note(time.time(), lines))

    def received(self, lines: tuple[str, ...]) -> None:
        """Hook: called with each datagram's lines as it arrives."""

    def values(self, key: str) -> list[tuple[int, str]]:
        """(index of the datagram, value) of every ``KEY=value`` line received."""
        return [
            (i, line.split("=", 1)[1])
            for i, n in enumerate(self.notes)
            for line in n.lines
            if line.split("=", 1)[0] == key
        ]

    def close(self) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        finally:
            self.sock.close()
