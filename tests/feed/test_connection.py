"""The connection worker against a tiny in-test websockets server on port 0."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from feed_helpers import JsonFrames, RecordingSink, TinyServer

from collector.errors import CredentialsError
from collector.feed.connection import Connection, ConnectionSettings, auth_lost, login_result
from collector.feed.policies import AUTH_RETRY_S, Fatal

TOPICS = ["update:BTC-USD_0", "update:ETH-USD_0", "snapshotL1:BTC-USD"]


class Delays:
    """Injected sleep: records backoff delays and returns at once; watchdog ticks sleep for real."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.recorded: list[float] = []

    async def __call__(self, delay: float) -> None:
        if delay == self.tick:
            await asyncio.sleep(delay)
            return
        self.recorded.append(delay)
        await asyncio.sleep(0)


class FakeTime:
    """A clock that only moves when someone sleeps: stale detection without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await asyncio.sleep(0)


SETTINGS = ConnectionSettings(backoff_initial=0.3, backoff_cap=2.4, backoff_jitter=0.0)


def spot_conn(
    url: str, sink: RecordingSink, settings: ConnectionSettings = SETTINGS, **kwargs: Any
) -> Connection:
    """The ``spot_oss#0`` worker on TOPICS with JSON frames; kwargs go to Connection."""
    return Connection(
        "spot_oss#0", "spot_oss", url, TOPICS, sink, JsonFrames(), settings=settings, **kwargs
    )


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Connection], Awaitable[asyncio.Task[None]]]]:
    tasks: list[tuple[Connection, asyncio.Task[None]]] = []

    async def start(conn: Connection) -> asyncio.Task[None]:
        task = asyncio.create_task(conn.run())
        tasks.append((conn, task))
        return task

    yield start
    for conn, task in tasks:
        await conn.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_frames_are_stamped_in_order_and_pongs_are_not_forwarded(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    conn = spot_conn(tiny_server.url, sink)
    await running(conn)
    ws = await tiny_server.wait_sessions(1)
    await tiny_server.wait_received(lambda s, t: "subscribe" in t)
    await conn.connected.wait()
    for i in range(50):
        await ws.send(json.dumps({"topic": "update:BTC-USD_0", "i": i}))
    await ws.send("pong")
    await ws.send(b'{"binary": true}')
    await sink.wait_for(lambda s: len(s.frames) >= 52)  # ack + 50 + binary
    frames = sink.frames
    assert json.loads(frames[0]) == {"event": "subscribe", "channel": TOPICS}
    assert [json.loads(f)["i"] for f in frames[1:51]] == list(range(50))
    assert frames[51] == b'{"binary": true}'
    assert "pong" not in frames
    stamps = [i[3] for i in sink.items if isinstance(i, tuple)]
    assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000_000_000
    assert all(
        i[0] == "spot_oss#0" and i[1] == "spot_oss" for i in sink.items if isinstance(i, tuple)
    )
    assert sink.kinds()[:2] == ["connected", "subscribe_sent"]
    assert sink.events[1].topics == tuple(TOPICS)
    assert conn.stats.frames == 52 and conn.stats.pongs == 1


async def test_server_close_reconnects_with_backoff_and_resubscribes_everything(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    delays = Delays(SETTINGS.tick())
    conn = spot_conn(tiny_server.url, sink, sleep=delays)
    await running(conn)
    for n in range(1, 4):
        ws = await tiny_server.wait_sessions(n)
        await tiny_server.wait_received(lambda s, t, n=n: s == n - 1 and "subscribe" in t)
        await ws.close()
    await tiny_server.wait_sessions(4)
    await tiny_server.wait_received(lambda s, t: s == 3 and "subscribe" in t)
    subscribes = [(s, json.loads(t)) for s, t in tiny_server.received if t != "ping"]
    assert [s for s, _ in subscribes] == [0, 1, 2, 3]
    assert all(f == {"op": "subscribe", "args": TOPICS} for _, f in subscribes)
    assert delays.recorded == [0.3, 0.6, 1.2]  # short sessions: backoff keeps growing
    kinds = sink.kinds()
    assert kinds[:7] == [
        "connected",
        "subscribe_sent",
        "disconnected",
        "connected",
        "subscribe_sent",
        "disconnected",
        "connected",
    ]
    disconnected = [e for e in sink.events if e.kind == "disconnected"]
    assert disconnected[0].topics == tuple(TOPICS)
    assert "connection_lost" in disconnected[0].detail
    assert conn.stats.reconnects == 3


async def test_unreachable_server_is_retried_forever_with_capped_backoff(
    sink: RecordingSink, running
) -> None:
    attempts = 0

    class CountingDelays:
        def __init__(self) -> None:
            self.recorded: list[float] = []
            self.done = asyncio.Event()

        async def __call__(self, delay: float) -> None:
            nonlocal attempts
            attempts += 1
            self.recorded.append(delay)
            if attempts >= 12:
                self.done.set()
                await asyncio.Event().wait()  # park: the test has seen enough
            await asyncio.sleep(0)

    delays = CountingDelays()
    # port 1 on loopback: connection refused
    conn = Connection(
        "spot#0",
        "spot",
        "ws://127.0.0.1:1/ws/spot",
        TOPICS,
        sink,
        JsonFrames(),
        settings=SETTINGS,
        sleep=delays,
    )
    await running(conn)
    await asyncio.wait_for(delays.done.wait(), 10)
    assert delays.recorded == [0.3, 0.6, 1.2] + [2.4] * 9
    assert set(conn.stats.reasons) == {"ClientConnectorError"}
    assert "connected" not in sink.kinds() and "disconnected" not in sink.kinds()


@pytest.mark.parametrize(
    ("answer_pings", "timings", "deadline"),
    [
        (False, {"ping_interval": 15, "pong_timeout": 10, "stale_after": 3600}, "deadline 10.0s"),
        (True, {"ping_interval": 3600, "pong_timeout": 3600, "stale_after": 45}, "deadline 45.0s"),
    ],
    ids=["no-pong", "no-data"],
)
async def test_a_stale_connection_is_replaced(
    tiny_server: TinyServer,
    sink: RecordingSink,
    running,
    answer_pings: bool,
    timings: dict[str, float],
    deadline: str,
) -> None:
    tiny_server.answer_pings = answer_pings
    fake = FakeTime()
    settings = ConnectionSettings(**timings, backoff_initial=0.25, backoff_jitter=0.0)
    conn = spot_conn(tiny_server.url, sink, settings=settings, clock=fake.clock, sleep=fake.sleep)
    await running(conn)
    await tiny_server.wait_sessions(2)
    stale = next(e for e in sink.events if e.kind == "stale")
    assert deadline in stale.detail
    assert stale.topics == tuple(TOPICS)
    assert conn.stats.reasons.get("stale", 0) >= 1
    disconnected = next(e for e in sink.events if e.kind == "disconnected")
    assert disconnected.detail.startswith("stale")
    if not answer_pings:
        assert any(t == "ping" for _, t in tiny_server.received)


async def test_resync_unsubscribes_and_subscribes_only_that_topic(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    conn = spot_conn(tiny_server.url, sink)
    assert conn.resync("update:BTC-USD_0") is False  # not connected yet
    await running(conn)
    await conn.connected.wait()
    assert conn.resync("update:NOT-MINE_0") is False
    assert conn.resync("update:ETH-USD_0") is True
    await tiny_server.wait_received(
        lambda s, t: t.count("subscribe") and "ETH" in t and "BTC" not in t and '"subscribe"' in t
    )
    ops = [json.loads(t) for _, t in tiny_server.received if t != "ping"]
    assert ops == [
        {"op": "subscribe", "args": TOPICS},
        {"op": "unsubscribe", "args": ["update:ETH-USD_0"]},
        {"op": "subscribe", "args": ["update:ETH-USD_0"]},
    ]
    assert len(tiny_server.sessions) == 1  # same socket: other topics keep flowing
    resync_events = [(e.kind, e.topics, e.detail) for e in sink.events][2:]
    assert resync_events == [
        ("unsubscribe_sent", ("update:ETH-USD_0",), "resync"),
        ("subscribe_sent", ("update:ETH-USD_0",), "resync"),
    ]


async def test_set_topics_moves_topics_off_a_live_socket(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    conn = spot_conn(tiny_server.url, sink)
    await running(conn)
    await conn.connected.wait()
    conn.set_topics(TOPICS[0::2])
    await tiny_server.wait_received(lambda s, t: "unsubscribe" in t)
    assert json.loads(tiny_server.received[-1][1]) == {"op": "unsubscribe", "args": [TOPICS[1]]}
    assert conn.topics == TOPICS[0::2]


async def test_oversize_frame_closes_the_session_and_it_reconnects(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    settings = ConnectionSettings(max_msg_size=1024, backoff_initial=0.25, backoff_jitter=0.0)
    delays = Delays(settings.tick())
    conn = spot_conn(tiny_server.url, sink, settings=settings, sleep=delays)
    await running(conn)
    ws = await tiny_server.wait_sessions(1)
    await conn.connected.wait()
    await ws.send("x" * 5000)
    await tiny_server.wait_sessions(2)
    assert all(len(f) < 1024 for f in sink.frames)
    disconnected = next(e for e in sink.events if e.kind == "disconnected")
    assert "1009" in disconnected.detail or "too big" in disconnected.detail.lower()


class Signer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def auth_frame(self) -> str:
        if self.fail:
            raise self.fail
        return json.dumps({"op": "authKeyExpires", "args": ["key", "1", "sig"]})

    def login_result(self, data: str | bytes) -> bool | None:
        return login_result(data)


class QuoteFrames:
    def subscribe(self, topics: list[str]) -> list[str]:
        return [json.dumps({"op": "quote", "symbol": t}) for t in topics]

    def unsubscribe(self, topics: list[str]) -> list[str]:
        return [json.dumps({"op": "unsubscribe-quote", "symbol": t}) for t in topics]


def otc_conn(url: str, topics: list[str], sink: RecordingSink, **kwargs: Any) -> Connection:
    """The ``otc#0`` worker with quote frames; kwargs go to Connection (auth, sleep...)."""
    return Connection("otc#0", "otc", url, topics, sink, QuoteFrames(), settings=SETTINGS, **kwargs)


async def test_otc_authenticates_before_any_quote_request(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    tiny_server.login_ok = True
    conn = otc_conn(tiny_server.url, ["BTC-USD", "ETH-USD"], sink, auth=Signer())
    await running(conn)
    await tiny_server.wait_received(lambda s, t: "ETH-USD" in t)
    ops = [json.loads(t)["op"] for _, t in tiny_server.received if t != "ping"]
    assert ops == ["authKeyExpires", "quote", "quote"]
    assert sink.kinds()[:3] == ["connected", "auth_ok", "subscribe_sent"]
    assert not [f for f in sink.frames if "login" in str(f)]


async def test_refused_login_is_a_clear_error_event_and_retried_slowly(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    tiny_server.login_ok = False
    delays = Delays(SETTINGS.tick())
    conn = otc_conn(
        tiny_server.url, ["BTC-USD"], sink, auth=Signer(), sleep=delays, rng=random.Random(1)
    )
    await running(conn)
    await tiny_server.wait_sessions(2)
    failed = next(e for e in sink.events if e.kind == "auth_failed")
    assert "login refused" in failed.detail
    assert delays.recorded[0] == AUTH_RETRY_S
    assert not [t for _, t in tiny_server.received if '"quote"' in t]


async def test_missing_credentials_stop_the_worker_as_fatal(
    tiny_server: TinyServer, sink: RecordingSink
) -> None:
    fatal: list[Fatal] = []
    conn = otc_conn(
        tiny_server.url,
        ["BTC-USD"],
        sink,
        auth=Signer(CredentialsError("BTSE_API_SECRET is not set")),
        on_fatal=lambda c, f: fatal.append(f),
    )
    await asyncio.wait_for(conn.run(), 10)  # returns: no retry loop
    assert fatal and "BTSE_API_SECRET" in fatal[0].reason
    assert "fatal" in sink.kinds()


def test_login_result_reads_only_login_acks() -> None:
    assert login_result('{"event":"login","success":true}') is True
    assert login_result(b'{"event":"login","success":false}') is False
    assert login_result('{"event":"subscribe","channel":[]}') is None
    assert login_result("pong") is None
    assert login_result('{"event":"login"') is None


def test_login_result_reads_btse_rest_style_auth_errors_as_refusals() -> None:
    # reference §2.4: error objects seen by roq ("context likely REST, possibly WS")
    refused = '{"status":400,"errorCode":-7,"message":"Authenticate failed","extraData":null}'
    expired = b'{"status":400,"errorCode":10002,"message":"User session is expired. Please login again","extraData":null}'
    assert login_result(refused) is False
    assert login_result(expired) is False
    # an old-format OSS error frame or a data frame carrying an errorCode is not a login reply
    old = '{"severity":"ERROR","error":[{"arg":"update:BTCC-USD_0","errorCode":"MARKET_PAIR_NOT_SUPPORT"}]}'
    assert login_result(old) is None
    assert login_result('{"topic":"quote","status":400,"errorCode":1}') is None


EXPIRED = '{"status":400,"errorCode":10002,"message":"User session is expired. Please login again","extraData":null}'
AUTH_FAILED = '{"status":400,"errorCode":-7,"message":"Authenticate failed","extraData":null}'


def test_auth_lost_reads_only_btse_logout_errors() -> None:
    # reference §2.4: the two REST-style error objects that mean "log in again"
    assert auth_lost(EXPIRED) == (10002, "User session is expired. Please login again")
    assert auth_lost(AUTH_FAILED.encode()) == (-7, "Authenticate failed")
    assert auth_lost('{"status":400,"errorCode":10002,"extraData":null}') == (
        10002,
        "User session is expired",
    )
    # other REST-style errors, data frames and OSS error frames are not a logout
    assert auth_lost('{"status":400,"errorCode":10001,"message":"x","extraData":null}') is None
    assert auth_lost('{"topic":"quote","status":400,"errorCode":10002}') is None
    assert (
        auth_lost('{"severity":"ERROR","errors":[{"error":{"code":1001,"message":"x"}}]}') is None
    )
    assert auth_lost('{"status":200,"errorCode":10002,"message":"ok"}') is None
    assert auth_lost("pong") is None and auth_lost(EXPIRED + " " * 5000) is None


async def test_session_expired_mid_stream_logs_in_again_and_resends_the_quotes(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    tiny_server.login_ok = True
    delays = Delays(SETTINGS.tick())
    conn = otc_conn(tiny_server.url, ["BTC-USD", "ETH-USD"], sink, auth=Signer(), sleep=delays)
    await running(conn)
    await tiny_server.wait_received(lambda s, t: s == 0 and "ETH-USD" in t)
    ws = await tiny_server.wait_sessions(1)
    await ws.send(EXPIRED)
    await tiny_server.wait_received(lambda s, t: s == 1 and "ETH-USD" in t)
    ops = [(s, json.loads(t)["op"]) for s, t in tiny_server.received if t != "ping"]
    assert ops == [
        (0, "authKeyExpires"),
        (0, "quote"),
        (0, "quote"),
        (1, "authKeyExpires"),
        (1, "quote"),
        (1, "quote"),
    ]
    await sink.wait_for(lambda k: k.kinds().count("subscribe_sent") == 2)
    assert sink.kinds() == [
        "connected",
        "auth_ok",
        "subscribe_sent",
        "disconnected",
        "auth_lost",
        "connected",
        "auth_ok",
        "subscribe_sent",
    ]
    lost = sink.events[4]
    assert lost.topics == ("BTC-USD", "ETH-USD")
    assert "errorCode 10002" in lost.detail and "User session is expired" in lost.detail
    assert "log in again" in lost.detail
    assert EXPIRED in sink.frames  # still handed on: the normalizer records the error event
    assert conn.stats.reasons == {"auth_lost": 1}
    assert delays.recorded == [SETTINGS.backoff_initial]  # the backoff, not the auth-refused wait


async def test_logged_out_at_every_login_backs_off_instead_of_looping_hot(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    tiny_server.login_ok = True
    tiny_server.after_login = AUTH_FAILED  # -7 after a successful login ack, every time
    delays = Delays(SETTINGS.tick())
    conn = otc_conn(tiny_server.url, ["BTC-USD"], sink, auth=Signer(), sleep=delays)
    await running(conn)
    await tiny_server.wait_sessions(6)
    await sink.wait_for(lambda k: k.kinds().count("auth_lost") >= 5)
    assert delays.recorded[:5] == [0.3, 0.6, 1.2, 2.4, 2.4]  # exponential up to the cap
    assert conn.stats.reasons["auth_lost"] >= 5
    assert all(
        "errorCode -7: Authenticate failed" in e.detail
        for e in sink.events
        if e.kind == "auth_lost"
    )


async def test_a_public_connection_ignores_rest_style_errors(
    tiny_server: TinyServer, sink: RecordingSink, running
) -> None:
    conn = spot_conn(tiny_server.url, sink)
    await running(conn)
    ws = await tiny_server.wait_sessions(1)
    await conn.connected.wait()
    await ws.send(EXPIRED)
    await ws.send('{"topic":"update:BTC-USD_0"}')
    await sink.wait_for(lambda k: '{"topic":"update:BTC-USD_0"}' in k.frames)
    assert "auth_lost" not in sink.kinds() and conn.stats.sessions == 1
