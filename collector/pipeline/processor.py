"""The processing stage: frames → the protocol core's Normalizer → column batches → the writer.

It runs on the event loop as one task, one queue drain at a time (at most ``drain_max``
items, a few milliseconds of work), so the receive tasks get the loop back between drains.
For every item of a drain, in queue order:

- a frame goes to ``Normalizer.feed``; its ``raw`` row is kept; the commands that come back
  (resubscribe a topic after a gap or a crossed book, spread topics after BTSE error 1007)
  are handed to the feed supervisor;
- a connection event goes to the Normalizer (``disconnected`` puts that connection's books
  back to SYNCING, ``subscribe_sent`` makes them wait for a fresh snapshot and registers OTC
  quote requests) or becomes an ``events`` row (connected, stale, auth, error);
- a shed marker becomes a ``shed`` event row and resubscribes every topic of that connection
  (gaps in the books are caught by their sequence numbers meanwhile).

Rows are handed to the :class:`~collector.pipeline.writer.BatchWriter` when ``batch_max_rows``
are buffered or ``batch_max_delay_s`` has passed; the writer's bounded backlog is the
backpressure that eventually makes the frame queue shed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol

import pyarrow as pa
import structlog

from collector.feed.acks import AckTracker
from collector.feed.connection import ConnEvent
from collector.pipeline.queue import FrameQueue, Item, Shed
from collector.pipeline.writer import BatchWriter
from collector.protocol.commands import Acknowledged, ExchangeErrorSeen, Resubscribe

log = structlog.get_logger()

BUFFER_FULL = 1007  # BTSE: "User message buffer is full." -> spread topics over more connections

# ConnEvent kinds -> events table kinds (disconnected/subscribe_sent rows come from the Normalizer)
EVENT_KINDS = {
    "connected": "connected",
    "stale": "stale",
    "auth_ok": "auth",
    "auth_failed": "auth",
    "auth_lost": "auth",  # BTSE logged the connection out (10002/-7); detail says why
    "fatal": "error",
}


class OtcRequest(Protocol):
    """An OTC quote request (``collector.config.OtcQuoteConfig``)."""

    @property
    def symbol(self) -> str: ...

    @property
    def quantity(self) -> float: ...

    @property
    def currency(self) -> str: ...

    @property
    def cl_order_id(self) -> str | None: ...


class FeedControl(Protocol):
    """What the processing stage asks of the feed (the Supervisor)."""

    def resync(self, conn_id: str, topic: str) -> bool: ...

    def resubscribe_all(self, conn_id: str) -> int: ...

    def split(self, conn_id: str) -> str | None: ...


def raw_batch(frames: list[tuple[str, str, str | bytes, int]]) -> dict[str, Any]:
    """The ``raw`` column batch of queued frames ``(conn_id, server, data, local_ts_us)``.

    One C-level pass per column (``map(itemgetter)``, ~3x cheaper than ``zip(*frames)``);
    the frame texts become an Arrow string array here, which also checks them: a binary
    frame that is not UTF-8 is stored decoded with U+FFFD replacements.
    """
    n = len(frames)
    conns = list(map(itemgetter(0), frames))
    if conns.count(conns[0]) == n:  # one connection: its server too
        servers: list[str] = [frames[0][1]] * n
    else:
        servers = list(map(itemgetter(1), frames))
    datas = list(map(itemgetter(2), frames))
    try:
        text = pa.array(datas, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        text = pa.array(
            [d if isinstance(d, str) else bytes(d).decode("utf-8", "replace") for d in datas],
            pa.string(),
        )
    return {
        "local_timestamp": list(map(itemgetter(3), frames)),
        "server": servers,
        "connection": conns,
        "frame": text,
    }


class Processor:
    def __init__(
        self,
        queue: FrameQueue,
        normalizer: Any,
        writer: BatchWriter,
        feed: FeedControl,
        *,
        product_of: Callable[[str], str | None] = lambda server: None,
        batch_max_rows: int = 50_000,
        batch_max_delay_s: float = 0.5,
        drain_max: int = 2048,
        keep_raw: bool = True,
        on_batch: Callable[[Mapping[str, Mapping[str, list[Any]]]], None] | None = None,
        on_ack: Callable[[str, tuple[str, ...]], None] | None = None,
        otc_requests: Mapping[str, OtcRequest] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.normalizer = normalizer
        self.buffers = normalizer.buffers
        self.writer = writer
        self.feed = feed
        self.product_of = product_of
        self.batch_max_rows = batch_max_rows
        self.batch_max_delay_s = batch_max_delay_s
        self.drain_max = drain_max
        self.keep_raw = keep_raw
        self.on_batch = on_batch
        self.on_ack = on_ack
        self.otc_requests: Mapping[str, OtcRequest] = otc_requests or {}
        self.acked: dict[str, set[str]] = {}
        self.ack_tracker = AckTracker()  # topics BTSE leaves out of its subscribe ack
        # (server, code) -> count, for the btse_collector_exchange_errors_total metric
        self.exchange_errors_by_server: dict[tuple[str, int | None], int] = {}
        self._clock = clock
        self._raw: list[
            tuple[str, str, str | bytes, int]
        ] = []  # the frames, transposed at hand-over
        self._last_handoff = clock()
        self.frames = 0
        self.commands = 0
        self.shed_frames = 0
        self.failures = 0

    # -- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Process forever (cancel to stop; then call :meth:`drain` to finish the queue)."""
        queue = self.queue
        while True:
            if not len(queue):
                if self._pending_rows():
                    wait = self.batch_max_delay_s - (self._clock() - self._last_handoff)
                    if wait <= 0:
                        await self.handoff()
                        continue
                    try:
                        async with asyncio.timeout(wait):
                            await queue.wait()
                    except TimeoutError:
                        await self.handoff()
                        continue
                else:
                    await queue.wait()
            self.process(queue.drain(self.drain_max))
            if (
                self._pending_rows() >= self.batch_max_rows
                or self._clock() - self._last_handoff >= self.batch_max_delay_s
            ):
                await self.handoff()
            else:
                await asyncio.sleep(0)  # let the receive tasks run between drains

    async def drain(self) -> None:
        """Process everything queued and hand the rows to the writer (shutdown)."""
        self.queue.flush_shed()
        while len(self.queue):
            self.process(self.queue.drain(self.drain_max))
        await self.handoff()

    # -- the work ----------------------------------------------------------------------------

    def process(self, items: Sequence[Item]) -> None:
        feed_many = getattr(self.normalizer, "feed_many", None)
        if feed_many is None:  # a normalizer with a plain feed() only
            self._process_one_by_one(items)
            return
        # runs of frames go to feed_many in one call each (the per-frame lookups are done
        # once per run); a control item (event, shed marker) is handled in order between them
        if all(map(tuple.__instancecheck__, items)):  # the usual drain: frames only (C scan)
            self._frames(feed_many, items)
            return
        start = 0
        for i, item in enumerate(items):
            if type(item) is not tuple:
                if i > start:
                    self._frames(feed_many, items[start:i])
                self._process_one_by_one((item,))
                start = i + 1
        if start < len(items):
            self._frames(feed_many, items[start:])

    def _frames(self, feed_many: Callable[..., list[Any]], frames: Sequence[Item]) -> None:
        if self.keep_raw:
            self._raw += frames  # type: ignore[arg-type]
        self.frames += len(frames)
        try:  # a frame that fails is recorded by _failed and the run goes on
            commands = feed_many(frames, self._failed)
            if commands:
                self._commands(commands)
        except Exception as exc:  # a bug must not stop the collector: record it, go on
            self._failed(frames[-1], exc)

    def _process_one_by_one(self, items: Sequence[Item]) -> None:
        feed = self.normalizer.feed
        keep = self._raw.append if self.keep_raw else None
        frames = 0
        for item in items:
            try:  # free in CPython 3.11 unless something raises
                if type(item) is tuple:
                    frames += 1
                    if keep is not None:
                        keep(item)
                    commands = feed(*item)
                    if commands:
                        self._commands(commands)
                elif isinstance(item, ConnEvent):
                    self._conn_event(item)
                elif isinstance(item, Shed):
                    self._shed(item)
            except Exception as exc:  # a bug must not stop the collector: record it, go on
                self._failed(item, exc)
        self.frames += frames

    def _failed(self, item: Item, exc: Exception) -> None:
        self.failures += 1
        conn_id = item[0] if type(item) is tuple else getattr(item, "conn_id", None)
        what = f"{type(exc).__name__}: {exc}"[:300]
        log.error("processing_failed", conn=conn_id, item=type(item).__name__, error=what)
        ts = item[3] if type(item) is tuple else time.time_ns() // 1000
        self.buffers.add_event(
            "error",
            int(ts),
            connection=conn_id if isinstance(conn_id, str) else None,
            detail=f"processing failed ({what}); the frame is kept in raw",
        )

    def _commands(self, commands: Sequence[Any]) -> None:
        for command in commands:
            self.commands += 1
            kind = type(command)
            if kind is Resubscribe:
                if not self.feed.resync(command.conn_id, command.topic):
                    log.info(
                        "resync_deferred",
                        conn=command.conn_id,
                        topic=command.topic,
                        reason="not connected; the next session resubscribes",
                    )
            elif kind is ExchangeErrorSeen:
                k = (command.conn_id.rsplit("#", 1)[0], command.code)  # conn ids: <server>#<n>
                self.exchange_errors_by_server[k] = self.exchange_errors_by_server.get(k, 0) + 1
                if command.code == BUFFER_FULL:
                    self.feed.split(command.conn_id)
            elif kind is Acknowledged and command.op == "subscribe":
                self.acked.setdefault(command.conn_id, set()).update(command.topics)
                self.ack_tracker.acked(command.conn_id, command.topics, self._clock())
                if self.on_ack is not None:
                    self.on_ack(command.conn_id, command.topics)
            # Pong and AuthResult: the connection itself handles pings and the login ack.

    def _refused(self, conn_id: str, topic: str) -> None:
        """BTSE acknowledged a subscribe without this topic: it will never deliver."""
        server = conn_id.split("#", 1)[0]
        self.buffers.add_event(
            "subscribe_refused",
            time.time_ns() // 1000,
            product=self.product_of(server),
            topic=topic,
            connection=conn_id,
            detail="left out of the subscribe acknowledgement: BTSE does not serve this topic "
            "on this endpoint; not retried until the next reconnect",
        )
        log.warning("subscribe_refused", conn=conn_id, topic=topic)

    def _conn_event(self, event: ConnEvent) -> None:
        norm = self.normalizer
        kind = event.kind
        if kind == "disconnected":
            self.acked.pop(event.conn_id, None)
            for topic in self.ack_tracker.reset(event.conn_id):
                self._refused(event.conn_id, topic)
            norm.on_disconnect(
                event.conn_id,
                event.topics,
                event.local_ts_us,
                server_name=event.server,
                reason=event.detail,
            )
            return
        if kind == "subscribe_sent":
            book_topics = [t for t in event.topics if t not in self.otc_requests]
            self.ack_tracker.sent(event.conn_id, book_topics)
            # on_subscribe_sent resets only the books of these topics: a per-topic resync
            # empties that book (SYNCING until its fresh snapshot) and leaves the others alone.
            if book_topics:
                norm.on_subscribe_sent(
                    event.conn_id, book_topics, event.local_ts_us, server_name=event.server
                )
            for topic in event.topics:
                q = self.otc_requests.get(topic)
                if q is not None:
                    norm.on_otc_quote_sent(
                        event.conn_id, q.symbol, q.quantity, q.currency, q.cl_order_id
                    )
            return
        if kind == "unsubscribe_sent":
            return  # the ack ("unsubscribed") and the "resync" event already tell it
        detail = event.detail or None
        if kind in ("auth_ok", "auth_failed"):
            detail = "login ok" if kind == "auth_ok" else f"login refused: {event.detail}"
        self.buffers.add_event(
            EVENT_KINDS.get(kind, kind),
            event.local_ts_us,
            product=self.product_of(event.server),
            connection=event.conn_id,
            count=len(event.topics) or None,
            detail=detail,
        )

    def _shed(self, shed: Shed) -> None:
        self.shed_frames += shed.count
        self.buffers.add_event(
            "shed",
            shed.last_ts_us,
            product=self.product_of(shed.server),
            connection=shed.conn_id,
            count=shed.count,
            detail=(
                f"frame queue full: {shed.count} frames dropped between "
                f"{shed.first_ts_us} and {shed.last_ts_us} (µs); topics resubscribed"
            ),
        )
        log.warning("frames_shed", conn=shed.conn_id, count=shed.count)
        self.feed.resubscribe_all(shed.conn_id)

    # -- handing over ------------------------------------------------------------------------

    def _pending_rows(self) -> int:
        b = self.buffers
        n: int = b.pending("book_changes") + b.pending("trades") + b.pending("events")
        return n + len(self._raw)

    def take_batch(self) -> dict[str, dict[str, Any]]:
        batch: dict[str, dict[str, Any]] = self.buffers.take_all()
        if self._raw:
            raw, self._raw = self._raw, []
            batch["raw"] = raw_batch(raw)
        return batch

    async def handoff(self) -> None:
        self._last_handoff = self._clock()
        for conn_id, topic in self.ack_tracker.refused(self._last_handoff):
            self._refused(conn_id, topic)
        batch = self.take_batch()
        if batch:
            if self.on_batch is not None:
                self.on_batch(batch)
            await self.writer.submit(batch)
