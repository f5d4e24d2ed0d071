"""One supervised WebSocket connection to a BTSE server (aiohttp client; uvloop when installed).

The receive path is kept hot: a frame is received, stamped with ``time.time_ns() // 1000`` and
handed to the sink (the pipeline's bounded queue) without being parsed. Everything else runs
beside it in the same session:

- a *sender* task writes client frames (subscribe, resync, ping) in order;
- a *watchdog* task sends the text ``ping`` every ``ping_interval`` and declares the connection
  stale when no ``pong`` came back within ``pong_timeout`` or nothing at all (no data frame and
  no ``pong``) arrived within ``stale_after``; a stale connection is closed and replaced. BTSE
  sends no heartbeat on a quiet book (silences of 11.6 s seen, an illiquid market's trades far
  longer), so the pongs are what proves such a socket alive (reference §2.2, §2.7).

An authenticated connection (OTC) logs in with a fresh ``authKeyExpires`` signature at the
start of every session, before any quote request. When BTSE later logs it out (its REST-style
error object with ``errorCode`` 10002 "User session is expired. Please login again", or -7
"Authenticate failed"), quote ids would come back null for the rest of the session, so the
session ends with :class:`~collector.errors.AuthLost` (an ``auth_lost`` event saying why) and
the next one logs in again and re-sends the quote requests, after the usual backoff.

A session ends on any error; :func:`collector.feed.policies.classify` decides what happens next
and :func:`collector.feed.policies.backoff` how long to wait. Reconnection never stops. On every
reconnect all topics are subscribed again; the ``disconnected`` control event tells the
processing stage to put their books back to SYNCING. Control events travel through the same
queue as frames, so the processing stage sees them in order with the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import structlog

from collector.errors import AuthError, AuthLost, ConnectionLost, StaleFeed
from collector.feed.policies import Fatal, Retry, backoff, classify
from collector.protocol.decode import rest_error

log = structlog.get_logger()

PING = "ping"


@dataclass(frozen=True)
class ConnectionSettings:
    """Timings and limits of one connection (seconds, bytes)."""

    ping_interval: float = 15.0  # BTSE recommends a text ping every 15 s
    pong_timeout: float = 10.0  # no pong this long after a ping: stale
    stale_after: float = 60.0  # nothing at all (no data frame, no pong) this long: stale
    connect_timeout: float = 10.0
    auth_timeout: float = 10.0
    max_msg_size: int = 4 * 1024 * 1024  # larger frames close the socket (error event)
    healthy_after: float = 30.0  # a session this long resets the backoff
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    backoff_jitter: float = 0.5
    watchdog_tick: float = 1.0
    resync_window: float = 60.0  # a topic resynced again within this long waits first:
    resync_initial: float = 0.5  # this long, doubling on every further repeat,
    resync_cap: float = 30.0  # up to this long

    def tick(self) -> float:
        return min(self.watchdog_tick, self.ping_interval, self.pong_timeout, self.stale_after) / 2


@dataclass(frozen=True)
class ConnEvent:
    """A lifecycle event of a connection, delivered in order with its frames.

    kind: connected, subscribe_sent, unsubscribe_sent, disconnected, stale, auth_ok, auth_failed,
    auth_lost (BTSE logged the connection out mid-session; it reconnects to log in again), fatal.
    """

    kind: str
    conn_id: str
    server: str
    local_ts_us: int
    topics: tuple[str, ...] = ()
    detail: str = ""


class FrameSink(Protocol):
    """Where a connection delivers frames and events (the pipeline's bounded queue)."""

    def put_frame(self, conn_id: str, server: str, data: str | bytes, local_ts_us: int) -> None: ...

    def put_event(self, event: ConnEvent) -> None: ...


class TopicFrames(Protocol):
    """Builds the client frames of one server: subscribe/unsubscribe (or OTC quote ops)."""

    def subscribe(self, topics: Sequence[str]) -> list[str]: ...

    def unsubscribe(self, topics: Sequence[str]) -> list[str]: ...


class Authenticator(Protocol):
    """Signs in before any subscription (OTC): the frame to send and how to read the reply."""

    def auth_frame(self) -> str: ...

    def login_result(self, data: str | bytes) -> bool | None:
        """True/False for a login ack (success or refusal), None for any other frame."""
        ...


def _small_json(data: str | bytes, *needles: str) -> dict[str, Any] | None:
    """``data`` as a JSON object when it is short and holds one of ``needles``; else None."""
    if len(data) > 4096:
        return None
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    if not any(needle in text for needle in needles):
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def login_result(data: str | bytes) -> bool | None:
    """Reads BTSE's ``{"event":"login","success":true}`` ack (shape of the reference §2.4).

    BTSE's REST-style error object (``{"status":400,"errorCode":-7,"message":"Authenticate
    failed","extraData":null}``, seen by roq, reference §2.4) is a refusal too: waiting for a
    login ack that will never come would only end in the auth timeout."""
    message = _small_json(data, '"login"', '"errorCode"')
    if message is None:
        return None
    if message.get("event") == "login":
        return message.get("success") is True
    return False if rest_error(message) is not None else None


# REST-style errorCodes that mean an authenticated connection is logged out (reference §2.4)
AUTH_LOST_CODES = {10002: "User session is expired", -7: "Authenticate failed"}
_ERROR_CODE = ("errorCode", b"errorCode")


def auth_lost(data: str | bytes) -> tuple[int, str] | None:
    """``(code, message)`` when ``data`` is BTSE's REST-style error object with ``errorCode``
    10002 ("User session is expired. Please login again") or -7 ("Authenticate failed");
    None for any other frame. Read on authenticated connections after the login ack."""
    message = _small_json(data, '"errorCode"')
    error = None if message is None else rest_error(message)
    if error is None:
        return None
    code, text = error
    if code in AUTH_LOST_CODES:
        return code, text or AUTH_LOST_CODES[code]
    return None


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class ConnectionStats:
    frames: int = 0
    pongs: int = 0
    sessions: int = 0
    reconnects: int = 0
    last_reason: str = ""
    reasons: dict[str, int] = field(default_factory=dict)


class Connection:
    """A connection worker: ``await run()`` until cancelled; reconnects forever."""

    def __init__(
        self,
        conn_id: str,
        server: str,
        url: str,
        topics: Sequence[str],
        sink: FrameSink,
        frames: TopicFrames,
        *,
        settings: ConnectionSettings | None = None,
        auth: Authenticator | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_fatal: Callable[[Connection, Fatal], None] | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.server = server
        self.url = url
        self.topics: list[str] = list(dict.fromkeys(topics))
        self.settings = settings or ConnectionSettings()
        self.stats = ConnectionStats()
        self._sink = sink
        self._frames = frames
        self._auth = auth
        self._session = session
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._on_fatal = on_fatal
        self._outbox: asyncio.Queue[str] | None = None
        self._resync_last: dict[str, tuple[float, float]] = {}  # topic -> (sent at, its delay)
        self._resync_later: dict[str, asyncio.TimerHandle] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = False
        self._session_up = False
        self._stop_requested = asyncio.Event()
        self.connected = asyncio.Event()
        self._log = log.bind(conn=conn_id, server=server)

    # -- control from the supervisor ---------------------------------------------------------

    def resync(self, topic: str) -> bool:
        """Unsubscribe and subscribe ``topic`` only; other topics keep flowing.

        A topic resynced again within ``resync_window`` of its last resync waits first
        (``resync_initial`` doubling up to ``resync_cap``): a server that keeps answering with
        a crossed snapshot (BTSE's own doc examples are crossed) must not drive a
        resubscribe hot loop. A resync already waiting absorbs further requests.

        Returns False when not connected (the next session subscribes everything anyway).
        """
        if topic not in self.topics or self._outbox is None:
            return False
        if topic in self._resync_later:
            return True
        s = self.settings
        now = self._clock()
        last, delay = self._resync_last.get(topic, (None, 0.0))
        if last is None or now - last > s.resync_window:
            delay = 0.0
        else:
            delay = min(s.resync_cap, max(s.resync_initial, delay * 2))
        self._resync_last[topic] = (now + delay, delay)
        if delay <= 0:
            self._resync_now(topic)
        else:
            self._resync_later[topic] = asyncio.get_running_loop().call_later(
                delay, self._resync_now, topic
            )
        return True

    def _resync_now(self, topic: str) -> None:
        self._resync_later.pop(topic, None)
        if topic not in self.topics or self._outbox is None:
            return  # disconnected meanwhile: the next session subscribes everything
        for frame in self._frames.unsubscribe([topic]):
            self._outbox.put_nowait(frame)
        for frame in self._frames.subscribe([topic]):
            self._outbox.put_nowait(frame)
        self._event("unsubscribe_sent", (topic,), "resync")
        self._event("subscribe_sent", (topic,), "resync")

    def set_topics(self, topics: Sequence[str]) -> None:
        """Change the topic set (after a split); unsubscribes removed, subscribes added."""
        new = list(dict.fromkeys(topics))
        removed = [t for t in self.topics if t not in new]
        added = [t for t in new if t not in self.topics]
        self.topics = new
        if self._outbox is None:
            return
        if removed:
            for frame in self._frames.unsubscribe(removed):
                self._outbox.put_nowait(frame)
            self._event("unsubscribe_sent", tuple(removed), "moved")
        if added:
            for frame in self._frames.subscribe(added):
                self._outbox.put_nowait(frame)
            self._event("subscribe_sent", tuple(added), "moved")

    async def close(self) -> None:
        """Stop reading: closes the socket; ``run()`` returns."""
        self._stopping = True
        self._stop_requested.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=2.0)

    # -- the worker --------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, receive; on failure wait (backoff) and do it again, forever."""
        own_session = self._session is None
        session = self._session or aiohttp.ClientSession()
        delays = self._delays()
        try:
            while not self._stopping:
                started = self._clock()
                self._session_up = False
                try:
                    await self._session_once(session)
                    raise ConnectionLost(self.conn_id, "closed by server")
                except asyncio.CancelledError:
                    self._end_session("shutdown")
                    raise
                except Exception as exc:
                    if self._stopping:
                        self._end_session("shutdown")
                        return
                    decision = classify(exc)
                    self._record_end(exc, decision)
                    if isinstance(decision, Fatal):
                        if self._on_fatal is not None:
                            self._on_fatal(self, decision)
                        return
                    if self._clock() - started >= self.settings.healthy_after:
                        delays = self._delays()
                    delay = max(next(delays), decision.min_delay)
                    self.stats.reconnects += 1
                    self._log.info(
                        "ws_reconnect_wait", reason=decision.reason, delay_s=round(delay, 3)
                    )
                    await self._wait_or_stop(delay)
        finally:
            self.connected.clear()
            if own_session:
                await session.close()

    async def _wait_or_stop(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    def _delays(self) -> Iterator[float]:
        s = self.settings
        return backoff(s.backoff_initial, s.backoff_cap, s.backoff_jitter, self._rng)

    def _end_session(self, reason: str) -> None:
        if self._session_up:
            self._session_up = False
            self._event("disconnected", tuple(self.topics), reason)

    def _record_end(self, exc: Exception, decision: Retry | Fatal) -> None:
        reason = decision.reason
        self.stats.last_reason = reason
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        self._end_session(f"{reason}: {exc}"[:500])
        if isinstance(exc, StaleFeed):
            self._event("stale", tuple(self.topics), str(exc))
        if isinstance(exc, AuthError):
            self._log.error("ws_auth_refused", detail=exc.detail)
            self._event("auth_failed", (), exc.detail)
        if isinstance(exc, AuthLost):
            # BTSE documents the login only as the first frame of a connection (§2.4) and its
            # sample clients and roq re-login by reconnecting (§2.7): so do we, with backoff
            action = "reconnecting to log in again with a fresh signature"
            self._log.warning("ws_auth_lost", code=exc.code, message=exc.message, action=action)
            self._event(
                "auth_lost",
                tuple(self.topics),
                f"logged out by BTSE (errorCode {exc.code}: {exc.message}); {action}",
            )
        if isinstance(decision, Fatal):
            self._log.error("ws_fatal", reason=reason)
            self._event("fatal", tuple(self.topics), reason)
        self._log.warning("ws_disconnected", reason=reason, error=str(exc))

    def _event(self, kind: str, topics: tuple[str, ...] = (), detail: str = "") -> None:
        self._sink.put_event(ConnEvent(kind, self.conn_id, self.server, _now_us(), topics, detail))

    async def _session_once(self, session: aiohttp.ClientSession) -> None:
        s = self.settings
        async with asyncio.timeout(s.connect_timeout):
            ws = await session.ws_connect(
                self.url,
                autoping=True,
                heartbeat=None,
                max_msg_size=s.max_msg_size,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                compress=0,
            )
        self._ws = ws
        self._session_up = True
        self.stats.sessions += 1
        outbox: asyncio.Queue[str] = asyncio.Queue()
        try:
            if self._stopping:
                raise ConnectionLost(self.conn_id, "shutdown")
            self._event("connected", (), self.url)
            self._log.info("ws_connected", url=self.url, topics=len(self.topics))
            if self._auth is not None:
                await self._authenticate(ws)
            self._outbox = outbox
            if self.topics:
                for frame in self._frames.subscribe(self.topics):
                    outbox.put_nowait(frame)
                self._event("subscribe_sent", tuple(self.topics))
            self.connected.set()
            tasks = [
                asyncio.create_task(self._receive(ws), name=f"{self.conn_id}-receive"),
                asyncio.create_task(self._send(ws, outbox), name=f"{self.conn_id}-send"),
                asyncio.create_task(self._watchdog(outbox), name=f"{self.conn_id}-watchdog"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
        finally:
            self._outbox = None
            for handle in self._resync_later.values():
                handle.cancel()
            self._resync_later.clear()
            self.connected.clear()
            self._ws = None
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), timeout=s.connect_timeout)

    async def _authenticate(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        assert self._auth is not None
        await ws.send_str(self._auth.auth_frame())
        deadline = self._clock() + self.settings.auth_timeout
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise AuthError(self.server, "no login acknowledgement before the timeout")
            try:
                msg = await ws.receive(timeout=remaining)
            except TimeoutError:
                raise AuthError(
                    self.server, "no login acknowledgement before the timeout"
                ) from None
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise ConnectionLost(
                    self.conn_id, f"closed during auth ({msg.type.name})", ws.close_code
                )
            result = self._auth.login_result(msg.data)
            if result is None:
                self._sink.put_frame(self.conn_id, self.server, msg.data, _now_us())
                continue
            if not result:
                raise AuthError(self.server, f"login refused: {str(msg.data)[:200]}")
            self._event("auth_ok")
            self._log.info("ws_authenticated")
            return

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # The hot path: no parsing, no logging, no clock other than the receive stamp.
        receive = ws.receive
        put = self._sink.put_frame
        conn_id, server, stats = self.conn_id, self.server, self.stats
        text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        time_ns = time.time_ns
        # An authenticated (OTC) connection also watches for BTSE logging it out: its frames
        # are few, and the check is a substring test unless the frame carries an errorCode.
        watch = self._auth is not None
        while True:
            msg = await receive()
            kind = msg.type
            if kind is text or kind is binary:
                data = msg.data
                if len(data) < 8 and data.strip() in PONGS:  # the bare text "pong"
                    stats.pongs += 1
                    continue
                put(conn_id, server, data, time_ns() // 1000)
                stats.frames += 1
                if watch and _ERROR_CODE[kind is binary] in data:
                    lost = auth_lost(data)
                    if lost is not None:
                        raise AuthLost(conn_id, *lost)
                continue
            if kind is aiohttp.WSMsgType.ERROR:
                raise ConnectionLost(conn_id, f"transport error: {msg.data!r}", ws.close_code)
            raise ConnectionLost(conn_id, f"closed ({kind.name})", ws.close_code)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, outbox: asyncio.Queue[str]) -> None:
        while True:
            frame = await outbox.get()
            await ws.send_str(frame)

    async def _watchdog(self, outbox: asyncio.Queue[str]) -> None:
        s = self.settings
        clock, stats = self._clock, self.stats
        now = clock()
        last_rx = now
        last_frames, last_pongs = stats.frames, stats.pongs
        next_ping = now + s.ping_interval
        ping_outstanding_since: float | None = None
        tick = s.tick()
        while True:
            await self._sleep(tick)
            now = clock()
            if stats.frames != last_frames:
                last_frames, last_rx = stats.frames, now
            if stats.pongs != last_pongs:  # a pong is traffic too: a quiet book stays open
                last_pongs, ping_outstanding_since, last_rx = stats.pongs, None, now
            if ping_outstanding_since is not None and now - ping_outstanding_since > s.pong_timeout:
                raise StaleFeed(self.conn_id, now - ping_outstanding_since, s.pong_timeout)
            if now - last_rx > s.stale_after:
                raise StaleFeed(self.conn_id, now - last_rx, s.stale_after)
            if now >= next_ping:
                outbox.put_nowait(PING)
                if ping_outstanding_since is None:
                    ping_outstanding_since = now
                next_ping = now + s.ping_interval


PING_REPLY = "pong"
# BTSE answers with the bare text "pong"; a binary frame or stray whitespace is a pong too
PONGS = frozenset({PING_REPLY, PING_REPLY.encode()})
