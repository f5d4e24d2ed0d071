"""The supervisor: owns every connection worker, the topic plan, and the feed's reactions.

It starts one :class:`~collector.feed.connection.Connection` per planned connection and
keeps it running (the workers reconnect by themselves, forever). The processing stage asks
it to act on what the data revealed:

- ``resync(conn_id, topic)``: a gap or a crossed book: unsubscribe/subscribe that topic only;
- ``resubscribe_all(conn_id)``: frames of that connection were shed: resync all its topics;
- ``split(conn_id)``: BTSE error 1007 (buffer full): half the topics move to a new connection.

``stop()`` closes every socket (stop reading) and waits for the workers to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

import structlog

from collector.feed import planner
from collector.feed.connection import (
    Authenticator,
    Connection,
    ConnectionSettings,
    FrameSink,
    TopicFrames,
)
from collector.feed.policies import Fatal

log = structlog.get_logger()


class Supervisor:
    def __init__(
        self,
        topics_by_server: Mapping[str, Sequence[str]],
        urls: Mapping[str, str],
        sink: FrameSink,
        frames_for: Callable[[str], TopicFrames],
        *,
        settings: ConnectionSettings | None = None,
        auth_for: Callable[[str], Authenticator | None] = lambda server: None,
        max_topics_per_connection: int = planner.DEFAULT_MAX_TOPICS,
        on_fatal: Callable[[Connection, Fatal], None] | None = None,
    ) -> None:
        missing = sorted(s for s in topics_by_server if topics_by_server[s] and s not in urls)
        if missing:
            raise ValueError(f"no URL for server(s) {missing}; known: {sorted(urls)}")
        self.plan = planner.plan(topics_by_server, max_topics_per_connection)
        self.urls = dict(urls)
        self.settings = settings or ConnectionSettings()
        self._sink = sink
        self._frames_for = frames_for
        self._auth_for = auth_for
        self._on_fatal = on_fatal
        self.connections: dict[str, Connection] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.fatal: list[tuple[str, Fatal]] = []
        self._topic_conn: dict[str, str] = {}
        for conn_plan in self.plan.connections:
            self._make(conn_plan)

    def _make(self, conn_plan: planner.ConnectionPlan) -> Connection:
        conn = Connection(
            conn_plan.conn_id,
            conn_plan.server,
            self.urls[conn_plan.server],
            conn_plan.topics,
            self._sink,
            self._frames_for(conn_plan.server),
            settings=self.settings,
            auth=self._auth_for(conn_plan.server),
            on_fatal=self._fatal,
        )
        self.connections[conn.conn_id] = conn
        for topic in conn_plan.topics:
            self._topic_conn[topic] = conn.conn_id
        return conn

    def _fatal(self, conn: Connection, decision: Fatal) -> None:
        self.fatal.append((conn.conn_id, decision))
        if self._on_fatal is not None:
            self._on_fatal(conn, decision)

    def start(self) -> None:
        for conn_id, conn in self.connections.items():
            if conn_id not in self._tasks:
                self._tasks[conn_id] = asyncio.create_task(conn.run(), name=f"conn-{conn_id}")

    def conn_for(self, topic: str) -> Connection | None:
        conn_id = self._topic_conn.get(topic)
        return self.connections.get(conn_id) if conn_id else None

    @property
    def topic_count(self) -> int:
        return len(self._topic_conn)

    def resync(self, conn_id: str, topic: str) -> bool:
        conn = self.connections.get(conn_id) or self.conn_for(topic)
        if conn is None:
            return False
        return conn.resync(topic)

    def resubscribe_all(self, conn_id: str) -> int:
        conn = self.connections.get(conn_id)
        if conn is None:
            return 0
        return sum(1 for topic in list(conn.topics) if conn.resync(topic))

    def split(self, conn_id: str) -> str | None:
        """Move half the topics of ``conn_id`` to a new connection; returns its id."""
        if conn_id not in self.connections:
            return None
        result = planner.split(self.plan, conn_id)
        if result is None:
            log.warning("feed_split_impossible", conn=conn_id, reason="single topic")
            return None
        kept, new = result
        self.connections[conn_id].set_topics(kept.topics)
        conn = self._make(new)
        log.warning(
            "feed_split",
            conn=conn_id,
            new_conn=new.conn_id,
            kept=len(kept.topics),
            moved=len(new.topics),
        )
        if self._tasks:  # running: start the new worker now
            self._tasks[conn.conn_id] = asyncio.create_task(conn.run(), name=f"conn-{conn.conn_id}")
        return new.conn_id

    async def stop(self, timeout: float = 5.0) -> None:
        """Close every socket and wait for the workers (cancelled after ``timeout``)."""
        if not self._tasks:
            return
        await asyncio.gather(
            *(c.close() for c in self.connections.values()), return_exceptions=True
        )
        tasks = list(self._tasks.values())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
