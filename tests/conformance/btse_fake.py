"""A scripted fake of BTSE's WebSocket servers, written from the reference fact sheet only.

This is deliberately NOT ``collector.simulator``: every frame it sends is scripted by the test
(verbatim wire captures and doc examples of the reference), so the conformance tests catch the
places where the collector leans on our own simulator's habits instead of BTSE's behaviour.

One ``websockets`` server serves every path (``/ws/spot``, ``/ws/oss/futures``, ``/ws/otc``, ...).
Per path, a test installs a ``Script``: an async callback called for every client message
(except the text ``ping``, answered with the bare text ``pong`` unless ``answer_pings`` is off).
Every session (:class:`Session`) records what the client sent, so tests can assert on the exact
subscribe/unsubscribe/auth frames received.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import websockets
from websockets.asyncio.server import ServerConnection, serve

from collector.config import load_config
from collector.service.daemon import Daemon

# reference §2.4: documented key, secret and nonce, and the signatures recomputed with openssl
DOC_KEY = "4e9536c79f0fdd72bf04f2430982d3f61d9d76c996f0175bbba470d69d59816x"
DOC_SECRET = "848db84ac252b6726e5f6e7a711d9c96d9fd77d020151b45839a5b59c37203bx"
DOC_NONCE = 1624985375123
DOC_SIGNATURES = {
    "/ws/spot": "c410d38c681579adb335885800cff24c66171b7cc8376cfe43da1408c581748156b89bcc5a115bb496413bda481139fb",
    "/ws/futures": "bd8afb8bee58ba0a2c67f84dcfe6e64d0274f55d064bb26ea84a0fe6dd8c621b541b511982fb0c0b8c244e9521a80ea1",
    "/ws/otc": "971798b32585d7e63a1c2cafd261170c56caf17ff1d32a58fc2e9842292fa8ff2dbcf4fda7b4d6aed4a737c3c2930cf1",
}

# reference §2.4 [wire]: BTSE's REST-style error objects (seen by roq), verbatim
AUTH_FAILED = '{"status":400,"errorCode":-7,"message":"Authenticate failed","extraData":null}'
SESSION_EXPIRED = (
    '{"status":400,"errorCode":10002,"message":"User session is expired. Please login again",'
    '"extraData":null}'
)

PATHS = {
    "spot": "/ws/spot",
    "spot_oss": "/ws/oss/spot",
    "futures": "/ws/futures",
    "futures_oss": "/ws/oss/futures",
    "otc": "/ws/otc",
}


def sign(secret: str, path: str, nonce: str) -> str:
    """BTSE's authKeyExpires signature: hex(HMAC-SHA384(secret, path + nonce))."""
    return hmac.new(secret.encode(), (path + nonce).encode(), hashlib.sha384).hexdigest()


def ack(op: str, topics: list[str]) -> str:
    return json.dumps({"event": op, "channel": topics})


@dataclass
class Session:
    """One client connection to the fake."""

    path: str
    ws: ServerConnection
    index: int
    received: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    sent: int = 0  # data frames sent (pongs not counted)

    async def send(self, frame: str | dict[str, Any]) -> None:
        self.sent += 1
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        self.ws.transport.abort()

    def ops(self, op: str) -> list[list[str]]:
        """The ``args`` of every ``op`` frame this session received, in order."""
        out = []
        for text in self.received:
            if text.startswith("{"):
                msg = json.loads(text)
                if msg.get("op") == op:
                    out.append(list(msg.get("args", [])))
        return out


Script = Callable[[Session, dict[str, Any]], Awaitable[None]]


class FakeBtse:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.on_open: dict[str, Callable[[Session], Awaitable[None]]] = {}
        self.sessions: list[Session] = []
        self.answer_pings = True
        self.url = ""
        self.changed = asyncio.Event()
        self.handshake_extensions: list[str | None] = []

    def by_path(self, path: str) -> list[Session]:
        return [s for s in self.sessions if s.path == path]

    def frames_sent(self) -> int:
        return sum(s.sent for s in self.sessions)

    def urls(self) -> dict[str, str]:
        return {name: self.url + path for name, path in PATHS.items()}

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        session = Session(path, ws, len(self.by_path(path)))
        self.sessions.append(session)
        self.handshake_extensions.append(
            ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
        )
        self.changed.set()
        try:
            opener = self.on_open.get(path)
            if opener is not None:
                await opener(session)
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                session.received.append(text)
                self.changed.set()
                if text == "ping":
                    if self.answer_pings:
                        await ws.send("pong")
                    continue
                try:
                    msg = json.loads(text)
                except ValueError:
                    continue
                script = self.scripts.get(path)
                if script is not None and isinstance(msg, dict):
                    await script(session, msg)
        except websockets.ConnectionClosed:
            pass

    @asynccontextmanager
    async def running(self) -> Any:
        # compression=deflate: permessage-deflate is negotiated when the client offers it
        async with serve(
            self.handler, "127.0.0.1", 0, max_size=None, compression="deflate"
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}"
            yield self


async def until(
    predicate: Callable[[], bool], what: str | Callable[[], str], timeout: float = 15.0
) -> None:
    """Wait for a condition of the system under test (polled), failing with ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for: {what if isinstance(what, str) else what()}"
            )
        await asyncio.sleep(0.01)


FAST = """storage:
  flush_interval_s: 0.2
connection:
  ping_interval_s: {ping}
  pong_timeout_s: 5
  stale_after_s: 30
  backoff_initial_s: 0.02
  backoff_max_s: 0.1
pipeline:
  batch_max_delay_s: 0.05
book:
  validate_sample_rate: 1.0
health:
  listen: null
"""


def write_config(
    tmp: Path, fake: FakeBtse, markets: str, *, extra: str = "", ping: float = 15
) -> Path:
    urls = "".join(f"  {name}: {url}\n" for name, url in fake.urls().items())
    text = (
        f"data_dir: {tmp / 'data'}\nendpoints:\n{urls}markets:\n{markets}"
        + FAST.format(ping=ping)
        + extra
    )
    path = tmp / "collector.yaml"
    path.write_text(text)
    return path


@asynccontextmanager
async def collector(
    config: Path, *, ready_timeout: float = 3.0, environ: dict[str, str] | None = None
) -> Any:
    """The real daemon, in-process; stopped and flushed on exit."""
    daemon = Daemon(
        load_config(config), install_signals=False, ready_timeout=ready_timeout, environ=environ
    )
    await daemon.startup()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await daemon.shutdown()
    assert daemon.exit_code == 0


def store(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """The Parquet store, read back with DuckDB only."""
    con = duckdb.connect()
    for table in (
        "book_changes",
        "quotes",
        "trades",
        "events",
        "raw",
        "otc_quotes",
        "book_snapshots",
    ):
        if list((data_dir / table).rglob("*.parquet")):
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                f"'{data_dir}/{table}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
            )
    return con


def events(con: duckdb.DuckDBPyConnection, kind: str) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT topic, connection, detail, symbol FROM events WHERE kind = ? ORDER BY local_timestamp",
        [kind],
    ).fetchall()


def rebuild(con: duckdb.DuckDBPyConnection, product: str, symbol: str) -> Iterator[Any]:
    """Final (bids, asks, last seq) of one book from book_changes, resetting at snapshots."""
    rows = con.execute(
        "SELECT seq, is_snapshot, side, price, amount FROM book_changes "
        "WHERE product = ? AND symbol = ? AND grouping = 0 ORDER BY seq, is_snapshot DESC",
        [product, symbol],
    ).fetchall()
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    snap = None
    seq = None
    for seq, is_snapshot, side, price, amount in rows:
        if is_snapshot and snap != seq:
            bids, asks, snap = {}, {}, seq
        levels = bids if side == "bid" else asks
        if amount == 0:
            levels.pop(price, None)
        else:
            levels[price] = amount
    yield bids
    yield asks
    yield seq


def apply(book: dict[str, dict[float, float]], data: dict[str, Any]) -> None:
    """The reference client algorithm (§3.6) on a test-side book: absolute sizes, "0" deletes."""
    if data["type"] == "snapshot":
        book["bid"], book["ask"] = {}, {}
    for side, key in (("bid", "bids"), ("ask", "asks")):
        for price, size in data[key]:
            if float(size) == 0:
                book[side].pop(float(price), None)
            else:
                book[side][float(price)] = float(size)
