import asyncio

import pytest

from collector.feed.connection import ConnEvent
from collector.pipeline.queue import FrameQueue, Shed


def _event(kind: str, conn: str = "a#0") -> ConnEvent:
    return ConnEvent(kind, conn, "a", 1)


def test_frames_and_events_come_out_in_order() -> None:
    q = FrameQueue(10)
    q.put_event(_event("connected"))
    q.put_frame("a#0", "a", "f1", 10)
    q.put_frame("a#0", "a", b"f2", 11)
    q.put_event(_event("disconnected"))
    assert q.depth == 2 and len(q) == 4
    items = q.drain(3)
    assert items == [_event("connected"), ("a#0", "a", "f1", 10), ("a#0", "a", b"f2", 11)]
    assert q.depth == 0
    assert q.drain(100) == [_event("disconnected")]
    assert q.drain(100) == []


def test_a_full_queue_sheds_frames_and_marks_the_hole_in_order() -> None:
    q = FrameQueue(2)
    q.put_frame("a#0", "a", "1", 1)
    q.put_frame("b#0", "b", "2", 2)
    for ts in range(3, 8):  # full: all shed
        q.put_frame("a#0", "a", "x", ts)
    q.put_frame("b#0", "b", "y", 8)
    q.put_event(_event("stale"))  # events are never shed
    assert q.frames_shed == 6 and q.frames_in == 2
    assert [i for i in q.drain(1)] == [("a#0", "a", "1", 1)]
    q.put_frame("a#0", "a", "3", 9)  # room again: the marker goes before this frame
    items = q.drain(100)
    q.put_frame("b#0", "b", "4", 10)
    items += q.drain(100)
    assert items == [
        ("b#0", "b", "2", 2),
        _event("stale"),
        Shed("a#0", "a", 5, 3, 7),
        ("a#0", "a", "3", 9),
        Shed("b#0", "b", 1, 8, 8),
        ("b#0", "b", "4", 10),
    ]
    assert q.high_water == 2


def test_a_disconnect_closes_the_shed_run_before_the_event() -> None:
    q = FrameQueue(1)
    q.put_frame("a#0", "a", "1", 1)
    q.put_frame("a#0", "a", "2", 2)
    q.put_event(_event("disconnected"))
    assert q.drain(10)[1:] == [Shed("a#0", "a", 1, 2, 2), _event("disconnected")]


async def test_wait_returns_when_something_arrives_and_flushes_open_runs_when_idle() -> None:
    q = FrameQueue(1)
    waiter = asyncio.create_task(q.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.put_frame("a#0", "a", "1", 1)
    await asyncio.wait_for(waiter, 5)
    q.put_frame("a#0", "a", "2", 2)  # shed
    q.drain(10)
    await q.wait()  # idle with an open run: the marker is queued at once
    assert q.drain(10) == [Shed("a#0", "a", 1, 2, 2)]


def test_bad_bound() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        FrameQueue(0)
