"""The bounded frame queue between the connections and the processing stage.

Connections put frames without awaiting (the receive path stays hot); when the queue holds
``max_frames`` frames, new frames are **shed**: not stored, but counted per connection with the
time span they cover. Shedding is never silent: when a connection's frames are accepted again,
a :class:`Shed` marker is queued *in order*, just before the first accepted frame, so the
processing stage records a ``shed`` event and resynchronises that connection's books (the
frames lost may have carried deltas or a snapshot).

Connection lifecycle events (:class:`~collector.feed.connection.ConnEvent`) are never shed:
they are rare and the processing stage needs them to keep the books honest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from collector.feed.connection import ConnEvent

Frame = tuple[str, str, "str | bytes", int]  # conn_id, server, data, local_ts_us


@dataclass(frozen=True)
class Shed:
    """Frames of one connection dropped because the queue was full."""

    conn_id: str
    server: str
    count: int
    first_ts_us: int
    last_ts_us: int


Item = Frame | ConnEvent | Shed


@dataclass
class _Run:
    server: str
    count: int
    first_ts_us: int
    last_ts_us: int


class FrameQueue:
    """Bounded FIFO of frames and control items; one consumer (the processing stage)."""

    def __init__(self, max_frames: int) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self._items: deque[Item] = deque()
        self._frames = 0
        self._controls = 0  # control items queued (events, shed markers)
        self._waiter: asyncio.Future[None] | None = None
        self._shedding: dict[str, _Run] = {}  # conn_id -> its current shed run
        self._frames_out = 0  # frames drained (frames_in = drained + waiting)
        self._high_water = 0  # the deepest the queue was at a drain (depth only grows between)
        self.frames_shed = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def depth(self) -> int:
        """Frames waiting (control items not counted)."""
        return self._frames

    @property
    def frames_in(self) -> int:
        """Frames accepted so far (not shed)."""
        return self._frames_out + self._frames

    @property
    def high_water(self) -> int:
        """The most frames ever waiting at once."""
        return max(self._high_water, self._frames)

    def put_frame(self, conn_id: str, server: str, data: str | bytes, local_ts_us: int) -> None:
        # the receive hot path: the counters frames_in and high_water are derived at drain
        frames = self._frames
        if frames >= self.max_frames:
            run = self._shedding.get(conn_id)
            if run is None:
                self._shedding[conn_id] = _Run(server, 1, local_ts_us, local_ts_us)
            else:
                run.count += 1
                run.last_ts_us = local_ts_us
            self.frames_shed += 1
            return
        if self._shedding and conn_id in self._shedding:
            self._close_run(conn_id)
        self._items.append((conn_id, server, data, local_ts_us))
        self._frames = frames + 1
        waiter = self._waiter
        if waiter is not None:  # one wake-up per burst: the waiter is dropped once woken
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def put_event(self, event: ConnEvent) -> None:
        if event.kind == "disconnected" and event.conn_id in self._shedding:
            self._close_run(event.conn_id)
        self._put_control(event)

    def _close_run(self, conn_id: str) -> None:
        run = self._shedding.pop(conn_id)
        self._put_control(Shed(conn_id, run.server, run.count, run.first_ts_us, run.last_ts_us))

    def _put_control(self, item: ConnEvent | Shed) -> None:
        self._items.append(item)
        self._controls += 1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def flush_shed(self) -> None:
        """Queue a marker for every shed run still open (on shutdown or when idle)."""
        for conn_id in list(self._shedding):
            self._close_run(conn_id)

    def drain(self, max_items: int) -> list[Item]:
        """Take up to ``max_items`` items, oldest first, without waiting."""
        items = self._items
        if self._frames > self._high_water:
            self._high_water = self._frames
        if len(items) <= max_items:
            out = list(items)
            items.clear()
        else:
            popleft = items.popleft
            out = [popleft() for _ in range(max_items)]
        if self._controls:
            controls = sum(1 for item in out if type(item) is not tuple)
            self._controls -= controls
            self._frames -= len(out) - controls
            self._frames_out += len(out) - controls
        else:
            self._frames -= len(out)
            self._frames_out += len(out)
        return out

    async def wait(self) -> None:
        """Return when at least one item is queued (or a shed run is open)."""
        if self._items:
            return
        if self._shedding:
            self.flush_shed()
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
