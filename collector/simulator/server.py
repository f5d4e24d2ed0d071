"""The simulated BTSE exchange: a ``websockets`` server on loopback, usable in-process.

::

    async with Simulator(seed=1, symbols={"spot": ["BTC-USD"], "futures": ["BTC-PERP"]},
                         rate=0) as sim:          # rate=0: nothing moves until sim.tick()
        url = sim.url("spot_oss")                 # ws://127.0.0.1:PORT/ws/oss/spot
        sim.tick(10)                              # 10 market events per symbol, fanned out
        sim.truth.book("spot", "BTC-USD")         # the true book after the last seqNum
        sim.inject("gap", product="spot")         # the next delta is lost on the wire

Servers, their paths and which server serves which topic come from the spec registry. Each
connection has an outbox drained by a writer task that sends many frames per write; an outbox
that grows past ``max_buffer`` frames gets BTSE's 1007 "buffer full" error and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import structlog
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from collector.simulator import frames
from collector.simulator.exchange import Exchange, Key
from collector.simulator.faults import CONNECTION_FAULTS, MARKET_FAULTS, Fault, check_fault
from collector.simulator.session import (
    Auth,
    BadQuote,
    Invalid,
    NoReply,
    OtcQuote,
    OtcUnsubscribe,
    OtcUnsubscribeAll,
    Ping,
    Rejected,
    Subscribe,
    TopicRef,
    UnknownOp,
    parse_request,
    resolve_topic,
    verify_auth,
)
from collector.simulator.truth import Truth
from collector.specs import Server, SpecRegistry, load_registry

log = structlog.get_logger()

DEFAULT_SYMBOLS: dict[str, list[str]] = {
    "spot": ["BTC-USD", "ETH-USD"],
    "futures": ["BTC-PERP", "ETH-PERP"],
    "otc": ["BTC-USD"],
}
WRITE_BATCH = 512


class Connection:
    """One client socket: its server, subscriptions, auth state and outbox."""

    def __init__(self, sim: Simulator, conn_id: int, ws: ServerConnection, server: Server) -> None:
        self.sim = sim
        self.id = conn_id
        self.ws = ws
        self.server = server
        self.subs: dict[str, TopicRef] = {}
        self.authenticated = False
        self.outbox: deque[str | bytes] = deque()
        self.wake = asyncio.Event()
        now = sim.monotonic()
        self.last_in = now
        self.last_out = now
        self.stalled_until = 0.0
        self.slow_until = 0.0
        self.slow_delay = 0.0
        self.close_after_flush: int | None = None
        self.dead = False

    def stalled(self) -> bool:
        return self.sim.monotonic() < self.stalled_until

    def enqueue(self, frame: str | bytes) -> None:
        """Queue a frame (non-blocking). Silence while stalled; 1007 + close when full."""
        if self.dead or self.close_after_flush is not None:
            return
        if self.stalled():
            self.sim.count("frames_dropped_stalled")
            return
        if len(self.outbox) >= self.sim.max_buffer:
            self.sim.count("buffer_full")
            self.outbox.clear()
            self.outbox.append(frames.error_frame([(None, 1007)]))
            self.close_after_flush = 1011
            self.wake.set()
            return
        self.outbox.append(frame)
        self.wake.set()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (BTSE's idle drop, a crash)."""
        self.dead = True
        self.ws.transport.abort()

    async def writer(self) -> None:
        ws = self.ws
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox and not self.dead:
                if self.sim.monotonic() < self.slow_until:
                    frame = self.outbox.popleft()
                    await self._send([frame])
                    await asyncio.sleep(self.slow_delay)
                    continue
                batch = [self.outbox.popleft() for _ in range(min(len(self.outbox), WRITE_BATCH))]
                await self._send(batch)
            if self.close_after_flush is not None and not self.outbox:
                code, self.close_after_flush = self.close_after_flush, None
                self.dead = True
                await ws.close(code, frames.ERROR_MESSAGES[1007])
                return

    async def _send(self, batch: Sequence[str | bytes]) -> None:
        ws = self.ws
        async with ws.send_context():
            for frame in batch:
                if isinstance(frame, bytes):
                    ws.protocol.send_text(frame)
                else:
                    ws.protocol.send_text(frame.encode())
        self.last_out = self.sim.monotonic()
        self.sim.count("frames_sent", len(batch))


class Simulator:
    """See the module docstring.

    ``rate``: market events per second per symbol (0: only :meth:`tick` moves the markets).
    ``idle_timeout``: a socket with no inbound message and no outbound data for that long is
    dropped without a close frame (BTSE: 60 s). ``clock`` gives wall-clock seconds for frame
    timestamps; ``monotonic`` drives idle/stall/slow deadlines: inject both to drive time.
    ``benchmark_frames``: instead of live deltas, each ``update:`` subscriber receives a
    snapshot and that many pre-built deltas written in bulk (``benchmark_bulk=False``: one
    ``await send`` per frame, the baseline).
    """

    def __init__(
        self,
        seed: int = 1,
        symbols: Mapping[str, Sequence[str]] | None = None,
        *,
        rate: float = 10.0,
        otc_rate: float | None = None,
        idle_timeout: float = 60.0,
        api_keys: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Iterable[Fault | tuple[str, float] | tuple[str, float, dict[str, Any]]] = (),
        groupings: Iterable[int] = (0,),
        history: int = 20_000,
        recent_trades: int = 20,
        max_buffer: int = 200_000,
        registry: SpecRegistry | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        benchmark_frames: int = 0,
        benchmark_bulk: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else load_registry()
        wanted = {p: list(s) for p, s in (symbols if symbols is not None else DEFAULT_SYMBOLS).items()}
        for product in wanted:
            if product not in self.registry.products and product != "otc":
                raise ValueError(f"unknown product {product!r}; valid: {self.registry.products}")
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.seed = seed
        self.rate = rate
        self.otc_rate = rate if otc_rate is None else otc_rate
        self.idle_timeout = idle_timeout
        self.api_keys = dict(api_keys or {})
        self.host = host
        self.port = port
        self.max_buffer = max_buffer
        self.clock = clock
        self.monotonic = monotonic
        self.benchmark_frames = benchmark_frames
        self.benchmark_bulk = benchmark_bulk
        self.exchange = Exchange(self.registry, seed, wanted, clock, history=history,
                                 recent_trades=recent_trades, groupings=groupings)
        self.faults = [self._fault(f) for f in faults]
        self.servers = {s.path: s for s in self.registry.servers(environment="production")}
        self.counters: dict[str, int] = {}
        self.bench_stats: list[dict[str, float]] = []
        self._bench: dict[Key, tuple[list[bytes], list[bytes]]] = {}
        self._conns: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._ws_server: WsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    @staticmethod
    def _fault(spec: Fault | tuple[Any, ...]) -> Fault:
        if isinstance(spec, Fault):
            check_fault(spec.kind, spec.params)
            return spec
        kind, at, *rest = spec
        params = dict(rest[0]) if rest else {}
        product, symbol = params.pop("product", None), params.pop("symbol", None)
        check_fault(kind, params)
        return Fault(kind, float(at), product, symbol, params)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def truth(self) -> Truth:
        return self.exchange.truth

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.benchmark_frames:
            self._prebuild()
        self._ws_server = await serve(
            self._handle, self.host, self.port, process_request=self._route,
            ping_interval=None, max_size=2**20, max_queue=64,
        )
        sock = next(iter(self._ws_server.sockets))
        self.port = sock.getsockname()[1]
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        if self.rate > 0 and not self.benchmark_frames:
            self._tasks.append(asyncio.create_task(self._ticker()))
        if self.idle_timeout > 0:
            self._tasks.append(asyncio.create_task(self._idle_watchdog()))
        for fault in self.faults:
            self._tasks.append(asyncio.create_task(self._scheduled(fault)))
        log.info("simulator_started", urls=self.urls, seed=self.seed, rate=self.rate)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
            self._ws_server = None
        log.info("simulator_stopped", counters=self.counters)

    def url(self, server_name: str) -> str:
        server = self.registry.server(server_name)
        return f"ws://{self.host}:{self.port}{server.path}"

    @property
    def urls(self) -> dict[str, str]:
        return {s.name: f"ws://{self.host}:{self.port}{path}" for path, s in self.servers.items()}

    # -- counters for tests ------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever a counter changes."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    # -- driving the market ------------------------------------------------------------------

    def tick(self, steps: int = 1, product: str | None = None, symbol: str | None = None) -> None:
        """Advance matching markets by ``steps`` events each and fan the frames out."""
        keys = [k for k in self.exchange.markets if (product is None or k[0] == product)
                and (symbol is None or k[1] == symbol)]
        if not keys:
            raise ValueError(f"no simulated market matches product={product!r} symbol={symbol!r}")
        for _ in range(steps):
            for key in keys:
                self.exchange.advance(key)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        done = 0
        otc_done = 0
        interval = max(0.002, min(0.1, 1.0 / max(self.rate, 1e-9)))
        book_keys = [k for k in self.exchange.markets if k[0] != "otc"]
        otc_keys = [k for k in self.exchange.markets if k[0] == "otc"]
        while True:
            elapsed = loop.time() - start
            due = min(int(elapsed * self.rate) - done, max(1, int(self.rate * 0.25)))
            for _ in range(max(due, 0)):
                for key in book_keys:
                    self.exchange.advance(key)
            done = max(done + max(due, 0), int(elapsed * self.rate) - int(self.rate))
            otc_due = int(elapsed * self.otc_rate) - otc_done
            for _ in range(max(min(otc_due, 10), 0)):
                for key in otc_keys:
                    self.exchange.advance(key)
            otc_done += max(otc_due, 0)
            await asyncio.sleep(interval)

    async def _idle_watchdog(self) -> None:
        period = max(0.05, min(1.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            self.check_idle()

    def check_idle(self) -> int:
        """Drop every connection idle for ``idle_timeout``; returns how many were dropped."""
        now = self.monotonic()
        dropped = 0
        for conn in list(self._conns.values()):
            if conn.stalled() or conn.dead:
                continue
            if now - max(conn.last_in, conn.last_out) >= self.idle_timeout:
                log.info("sim_idle_drop", conn=conn.id, server=conn.server.name)
                conn.abort()
                dropped += 1
                self.count("idle_drops")
        return dropped

    # -- connections -------------------------------------------------------------------------

    def _route(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path not in self.servers:
            body = f"no BTSE endpoint at {path}; served: {', '.join(sorted(self.servers))}\n"
            return Response(404, "Not Found", Headers({"Content-Type": "text/plain"}),
                            body.encode())
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        server = self.servers[ws.request.path.split("?", 1)[0]]
        conn = Connection(self, next(self._ids), ws, server)
        self._conns[conn.id] = conn
        writer = asyncio.create_task(conn.writer())
        self.count("connections")
        try:
            async for message in ws:
                conn.last_in = self.monotonic()
                if conn.stalled():
                    self.count("inbound_ignored_stalled")
                    continue
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self._on_message(conn, text)
                self.count("messages_in")
        except ConnectionClosed:
            pass
        finally:
            conn.dead = True
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            self.exchange.drop(conn, conn.subs.values())
            del self._conns[conn.id]
            self.count("disconnections")

    def _on_message(self, conn: Connection, text: str) -> None:
        server = conn.server
        otc = server.product == "otc"
        request = parse_request(text, otc=otc)
        oss = server.kind == "oss"
        if isinstance(request, Ping):
            conn.enqueue("pong")
        elif isinstance(request, Subscribe):
            if otc:  # the silent empty ack (reference §4.3)
                conn.enqueue(frames.ack(request.op, []))
                return
            self._on_subscribe(conn, request)
        elif isinstance(request, Auth):
            path = server.auth_path or server.path
            ok = verify_auth(self.api_keys, path, request)
            conn.authenticated = ok
            log.info("sim_auth", conn=conn.id, server=server.name, success=ok)
            conn.enqueue(frames.login(ok))
        elif isinstance(request, OtcQuote):
            self.exchange.add_quote(conn, conn.authenticated, request)
        elif isinstance(request, BadQuote):
            conn.enqueue(
                frames.otc_quote(
                    self.registry.render(self.registry.channel("otc", "otc_quote")),
                    {
                        "buyQuoteId": None,
                        "sellQuoteId": None,
                        "clOrderId": request.cl_order_id,
                        "status": None,
                        "reason": request.reason,
                        "timestamp": self.exchange.now_ms(),
                    },
                )
            )
        elif isinstance(request, OtcUnsubscribe):
            self.exchange.remove_quote(conn, request.key)
        elif isinstance(request, OtcUnsubscribeAll):
            self.exchange.remove_quote(conn, None)
        elif isinstance(request, Invalid):
            if oss:
                conn.enqueue(frames.error_frame([(None, 1002)]))
        elif isinstance(request, UnknownOp):
            if oss:
                conn.enqueue(frames.error_frame([(None, 1001)]))
        elif isinstance(request, NoReply):
            pass

    def _on_subscribe(self, conn: Connection, request: Subscribe) -> None:
        symbols = self.exchange.symbols(conn.server.product)
        accepted: list[TopicRef] = []
        errors: list[tuple[str | None, int]] = []
        for topic in dict.fromkeys(request.args):
            ref = resolve_topic(self.registry, conn.server, topic, symbols)
            if isinstance(ref, Rejected):
                errors.append((ref.topic, ref.code))
            else:
                accepted.append(ref)
        conn.enqueue(frames.ack(request.op, [r.topic for r in accepted]))
        if errors and conn.server.kind == "oss":
            conn.enqueue(frames.error_frame(errors))
        for ref in accepted:
            if request.op == "subscribe":
                conn.subs[ref.topic] = ref
                if self.benchmark_frames and ref.kind == "book" and not ref.silent:
                    self._tasks.append(asyncio.create_task(self._blast(conn, ref)))
                    continue
                self.exchange.subscribe(conn, ref)
            else:
                held = conn.subs.pop(ref.topic, None)
                if held is not None:
                    self.exchange.unsubscribe(conn, held)
        self.count("subscribe_requests")

    # -- faults ------------------------------------------------------------------------------

    async def _scheduled(self, fault: Fault) -> None:
        await asyncio.sleep(fault.at)
        self.inject(fault.kind, fault.product, fault.symbol, **fault.params)

    def inject(self, kind: str, product: str | None = None, symbol: str | None = None,
               **params: Any) -> int:
        """Trigger a fault now (see :mod:`collector.simulator.faults`); returns how many
        markets or connections it touched."""
        params = check_fault(kind, params)
        log.info("sim_fault", kind=kind, product=product, symbol=symbol, **params)
        self.count(f"fault_{kind}")
        if kind in MARKET_FAULTS:
            keys = self.exchange.select(product, symbol)
            grouping = params.get("grouping")
            if kind == "gap":
                self.exchange.inject_gap(keys, int(params["count"]), grouping)
            elif kind == "dup":
                self.exchange.inject_dup(keys, grouping)
            elif kind == "crossed":
                self.exchange.inject_crossed(keys, grouping)
            elif kind == "rename":
                self.exchange.inject_rename(keys, params["seconds"], params["off"])
            return len(keys)
        assert kind in CONNECTION_FAULTS
        conns = self._select_conns(product, symbol, params.get("server"))
        now = self.monotonic()
        for conn in conns:
            if kind == "disconnect":
                conn.abort()
            elif kind == "stall":
                conn.stalled_until = now + float(params["seconds"])
                conn.outbox.clear()
            elif kind == "malformed":
                conn.enqueue('{"topic":"update:' + "\x00broken")
                conn.enqueue(self._schema_violation(conn))
            elif kind == "error1007":
                conn.outbox.clear()
                conn.outbox.append(frames.error_frame([(None, 1007)]))
                conn.close_after_flush = 1011
                conn.wake.set()
            elif kind == "slow":
                conn.slow_until = now + float(params["seconds"])
                conn.slow_delay = float(params["delay"])
            elif kind == "huge":
                size = int(params["size"])
                topic = next(iter(conn.subs), "huge")
                head = '{"topic":' + json.dumps(topic) + ',"data":{"padding":"'
                conn.enqueue(head + "x" * max(0, size - len(head) - 3) + '"}}')
        self.exchange.fault(kind, None, conns=len(conns), product=product, symbol=symbol,
                            server=params.get("server"))
        return len(conns)

    def _schema_violation(self, conn: Connection) -> str:
        for ref in conn.subs.values():
            if ref.kind == "book" and ref.symbol is not None:
                # seqNum as a string, asks not an array, no prevSeqNum: fails the payload schema.
                return ('{"topic":"' + ref.topic + '","data":{"bids":[["1.0","1"]],"asks":"none",'
                        '"seqNum":"12","type":"delta","symbol":"' + ref.symbol + '","timestamp":0}}')
        return '{"topic":"tradeHistoryApi:BTC-USD","data":{"trades":"none"}}'

    def _select_conns(self, product: str | None, symbol: str | None,
                      server: str | None) -> list[Connection]:
        out = []
        for conn in self._conns.values():
            if conn.dead:
                continue
            if product is not None and conn.server.product != product:
                continue
            if server is not None and conn.server.name != server:
                continue
            if symbol is not None and not any(r.symbol == symbol for r in conn.subs.values()):
                continue
            out.append(conn)
        return out

    # -- benchmark mode ----------------------------------------------------------------------

    def _prebuild(self) -> None:
        """Build the benchmark burst of every book market before serving (not measured)."""
        for key in [k for k in self.exchange.markets if k[0] != "otc"]:
            view = self.exchange.views[key][0]
            topic = self.registry.render(self.registry.channel(key[0], "book"),
                                         symbol=key[1], grouping=0)
            info = self.exchange.markets[key].info
            bids, asks = view.levels()
            ts = self.exchange.now_ms()
            burst = [frames.snapshot_frame(topic, key[1], info, view.seq, bids, asks, ts)]
            market = self.exchange.markets[key]
            while len(burst) <= self.benchmark_frames:
                step = market.step()
                delta = view.apply(step.changes)
                if delta is None:
                    continue
                self.truth.record_delta(key[0], key[1], 0, delta, ts)
                burst.append(frames.book_frame(topic, key[1], info, "delta", delta.seq,
                                               delta.bids, delta.asks, ts))
            encoded = [f.encode() for f in burst]
            # Server frames are unmasked: serialize once, write in ~1 MiB chunks later.
            chunks: list[bytes] = []
            chunk: list[bytes] = []
            size = 0
            for frame in encoded:
                raw = Frame(Opcode.TEXT, frame).serialize(mask=False, extensions=[])
                chunk.append(raw)
                size += len(raw)
                if size >= 1 << 20:
                    chunks.append(b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                chunks.append(b"".join(chunk))
            self._bench[key] = (encoded, chunks)

    async def _blast(self, conn: Connection, ref: TopicRef) -> None:
        assert ref.symbol is not None
        encoded, chunks = self._bench[(ref.product, ref.symbol)]
        ws = conn.ws
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            if not self.benchmark_bulk:
                for frame in encoded:
                    await ws.send(frame, text=True)
            elif not ws.protocol.extensions:
                for blob in chunks:
                    ws.transport.write(blob)
                    await ws.drain()
            else:  # permessage-deflate negotiated: the protocol must compress each frame
                for i in range(0, len(encoded), WRITE_BATCH):
                    await conn._send(encoded[i:i + WRITE_BATCH])
        except ConnectionClosed:
            return
        seconds = loop.time() - started
        conn.last_out = self.monotonic()
        self.bench_stats.append({"frames": len(encoded), "seconds": seconds,
                                 "frames_per_s": len(encoded) / seconds if seconds else 0.0})
        self.count("bench_bursts")
