import asyncio
import threading
from typing import Any

import pyarrow as pa

from collector.feed.connection import ConnEvent
from collector.pipeline.processor import Processor
from collector.pipeline.queue import FrameQueue
from collector.pipeline.writer import BatchWriter
from collector.protocol.commands import Acknowledged, ExchangeErrorSeen, Resubscribe
from collector.protocol.rows import TableBuffers


class FakeNormalizer:
    """Records what the stage tells it; a frame 'GAP' asks for a resubscribe."""

    def __init__(self) -> None:
        self.buffers = TableBuffers()
        self.calls: list[tuple[Any, ...]] = []

    def feed(self, conn_id: str, server: str, data: str, ts: int) -> list[Any]:
        self.calls.append(("feed", conn_id, data))
        self.buffers.add_trade("spot", "BTC-USD", ts, ts, data, "buy", 1.0, 2.0)
        return {
            "GAP": [Resubscribe(conn_id, "update:BTC-USD_0", "gap")],
            "1007": [ExchangeErrorSeen(conn_id, 1007, "User message buffer is full.", None)],
            "ACK": [Acknowledged(conn_id, "subscribe", ("t1",))],
        }.get(data, [])

    def on_disconnect(
        self, conn_id: str, topics: Any, ts: int, *, server_name: str, reason: str
    ) -> None:
        self.calls.append(("on_disconnect", conn_id, tuple(topics), ts, server_name, reason))

    def on_subscribe_sent(
        self, conn_id: str, topics: list[str], ts: int, *, server_name: str
    ) -> None:
        self.calls.append(("on_subscribe_sent", conn_id, tuple(topics), ts))

    def on_otc_quote_sent(
        self, conn_id: str, symbol: str, quantity: float, currency: str, cl_order_id: str | None
    ) -> None:
        self.calls.append(("on_otc_quote_sent", conn_id, symbol, quantity, currency))


class BatchNormalizer(FakeNormalizer):
    """A normalizer with ``feed_many``: the stage hands it runs of frames."""

    def feed_many(self, frames: Any, failed: Any = None) -> list[Any]:
        self.calls.append(("feed_many", len(frames)))
        out: list[Any] = []
        for frame in frames:
            try:
                out += self.feed(*frame)
            except Exception as exc:
                failed(frame, exc)
        return out


def _fail_on_boom(norm: FakeNormalizer) -> None:
    """The frame "BOOM" makes ``norm.feed`` raise (a bug in the normalizer)."""
    original = norm.feed

    def feed(conn_id: str, server: str, data: str, ts: int) -> list[Any]:
        if data == "BOOM":
            raise KeyError("bug")
        return original(conn_id, server, data, ts)

    norm.feed = feed  # type: ignore[method-assign]


class FakeFeed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def resync(self, conn_id: str, topic: str) -> bool:
        self.calls.append(("resync", conn_id, topic))
        return True

    def resubscribe_all(self, conn_id: str) -> int:
        self.calls.append(("resubscribe_all", conn_id))
        return 1

    def split(self, conn_id: str) -> str | None:
        self.calls.append(("split", conn_id))
        return None


class ListStore:
    def __init__(self) -> None:
        self.batches: list[tuple[str, dict[str, list[Any]]]] = []
        self.appended = threading.Event()

    def append(self, table: str, columns: Any) -> None:
        self.batches.append((table, {k: v.to_pylist() if isinstance(v, pa.Array) else list(v)
                                     for k, v in columns.items()}))
        self.appended.set()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def rows(self, table: str) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for t, cols in self.batches:
            if t == table:
                for k, v in cols.items():
                    out.setdefault(k, []).extend(v)
        return out


def _stage(
    max_frames: int = 100,
) -> tuple[FrameQueue, FakeNormalizer, FakeFeed, ListStore, Processor]:
    q = FrameQueue(max_frames)
    norm = FakeNormalizer()
    feed = FakeFeed()
    store = ListStore()
    writer = BatchWriter(store, flush_interval_s=60)
    proc = Processor(q, norm, writer, feed, product_of=lambda s: "spot")
    return q, norm, feed, store, proc


async def test_frames_events_and_commands_are_handled_in_queue_order() -> None:
    q, norm, feed, store, proc = _stage()
    q.put_event(ConnEvent("connected", "spot#0", "spot", 1, (), "ws://x"))
    q.put_event(ConnEvent("subscribe_sent", "spot#0", "spot", 2, ("t1", "t2")))
    q.put_frame("spot#0", "spot", "ACK", 3)
    q.put_frame("spot#0", "spot", "GAP", 4)
    q.put_frame("spot#0", "spot", "1007", 5)
    q.put_event(ConnEvent("stale", "spot#0", "spot", 6, ("t1", "t2"), "silent for 50s"))
    q.put_event(ConnEvent("disconnected", "spot#0", "spot", 7, ("t1", "t2"), "stale: x"))
    await proc.drain()
    await proc.writer.close()
    assert norm.calls == [
        ("on_subscribe_sent", "spot#0", ("t1", "t2"), 2),
        ("feed", "spot#0", "ACK"),
        ("feed", "spot#0", "GAP"),
        ("feed", "spot#0", "1007"),
        ("on_disconnect", "spot#0", ("t1", "t2"), 7, "spot", "stale: x"),
    ]
    assert feed.calls == [("resync", "spot#0", "update:BTC-USD_0"), ("split", "spot#0")]
    assert proc.acked == {}  # cleared by the disconnect
    assert proc.exchange_errors_by_server == {("spot", 1007): 1}
    raw = store.rows("raw")
    assert raw == {
        "local_timestamp": [3, 4, 5],
        "server": ["spot"] * 3,
        "connection": ["spot#0"] * 3,
        "frame": ["ACK", "GAP", "1007"],
    }
    assert store.rows("trades")["id"] == ["ACK", "GAP", "1007"]
    events = store.rows("events")
    # t2 was subscribed but left out of the ack: refused (after the ack's grace, or at the
    # latest when the connection drops)
    assert events["kind"] == ["connected", "stale", "subscribe_refused"]
    assert events["topic"] == [None, None, "t2"]
    assert events["detail"][0] == "ws://x" and events["detail"][1] == "silent for 50s"
    assert events["count"] == [None, 2, None]
    assert set(events["product"]) == {"spot"}


async def test_otc_subscriptions_register_quote_requests() -> None:
    q, norm, _, _, proc = _stage()

    class Quote:
        symbol, quantity, currency, cl_order_id = "BTC-USD", 1.0, "BTC", None

    proc.otc_requests = {"quote:BTC-USD:1:BTC": Quote()}
    q.put_event(ConnEvent("subscribe_sent", "otc#0", "otc", 2, ("quote:BTC-USD:1:BTC",)))
    await proc.drain()
    await proc.writer.close()
    assert norm.calls == [("on_otc_quote_sent", "otc#0", "BTC-USD", 1.0, "BTC")]


async def test_shed_frames_become_an_event_and_a_resync_of_that_connection() -> None:
    q, _norm, feed, store, proc = _stage(max_frames=1)
    q.put_frame("spot#0", "spot", "A", 1)
    q.put_frame("spot#0", "spot", "B", 2)  # shed
    q.put_frame("spot#0", "spot", "C", 3)  # shed
    await proc.drain()
    await proc.writer.close()
    events = store.rows("events")
    assert events["kind"] == ["shed"] and events["count"] == [2]
    assert "2 frames dropped" in events["detail"][0]
    assert feed.calls == [("resubscribe_all", "spot#0")]
    assert store.rows("raw")["frame"] == ["A"]


async def test_the_running_stage_hands_rows_over_after_the_batch_delay() -> None:
    q, _, _, store, proc = _stage()
    proc.batch_max_delay_s = 0.01
    task = asyncio.create_task(proc.run())
    q.put_frame("spot#0", "spot", "A", 1)
    try:
        assert await asyncio.to_thread(store.appended.wait, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proc.writer.close()
    assert store.rows("raw")["frame"] == ["A"]


async def test_a_failing_frame_is_recorded_and_processing_goes_on() -> None:
    q, norm, _, store, proc = _stage()
    _fail_on_boom(norm)
    for i, data in enumerate(["A", "BOOM", "B"]):
        q.put_frame("spot#0", "spot", data, 10 + i)
    await proc.drain()
    await proc.writer.close()
    assert store.rows("trades")["id"] == ["A", "B"]
    assert store.rows("raw")["frame"] == ["A", "BOOM", "B"]  # kept: can be replayed later
    events = store.rows("events")
    assert events["kind"] == ["error"] and "KeyError" in events["detail"][0]
    assert events["local_timestamp"] == [11] and events["connection"] == ["spot#0"]
    assert proc.failures == 1 and proc.frames == 3


def test_raw_batch_columns_from_frames_of_several_connections_and_binary() -> None:
    from collector.pipeline.processor import raw_batch

    frames: list[tuple[str, str, str | bytes, int]] = [
        ("spot_oss#0", "spot_oss", '{"a":1}', 10),
        ("spot_oss#0", "spot_oss", b'{"b":"\xc3\xa9"}', 11),  # binary, valid UTF-8
        ("futures_oss#1", "futures_oss", '{"c":3}', 12),
    ]
    batch = raw_batch(frames)
    assert batch["local_timestamp"] == [10, 11, 12]
    assert batch["server"] == ["spot_oss", "spot_oss", "futures_oss"]
    assert batch["connection"] == ["spot_oss#0", "spot_oss#0", "futures_oss#1"]
    assert batch["frame"].type == pa.string()
    assert batch["frame"].to_pylist() == ['{"a":1}', '{"b":"é"}', '{"c":3}']
    one = raw_batch([("otc#0", "otc", b"\xff\xfebad", 5), ("otc#0", "otc", "ok", 6)])
    assert one["server"] == ["otc", "otc"]
    assert one["frame"].to_pylist() == ["\ufffd\ufffdbad", "ok"]  # not UTF-8: replaced, kept


async def test_runs_of_frames_go_to_feed_many_between_the_events_in_order() -> None:
    q, _, feed, store, _ = _stage()
    norm = BatchNormalizer()
    proc = Processor(q, norm, BatchWriter(store, flush_interval_s=60), feed, product_of=lambda s: "spot")
    q.put_event(ConnEvent("subscribe_sent", "spot#0", "spot", 2, ("t1",)))
    for i, data in enumerate(["ACK", "GAP", "BOOM"]):
        q.put_frame("spot#0", "spot", data, 3 + i)
    q.put_event(ConnEvent("disconnected", "spot#0", "spot", 7, ("t1",), "x"))
    q.put_frame("spot#0", "spot", "1007", 8)
    _fail_on_boom(norm)
    await proc.drain()
    await proc.writer.close()
    assert [c[0] if c[0] != "feed_many" else c for c in norm.calls if c[0] != "feed"] == [
        "on_subscribe_sent",
        ("feed_many", 3),
        "on_disconnect",
        ("feed_many", 1),
    ]
    assert feed.calls == [("resync", "spot#0", "update:BTC-USD_0"), ("split", "spot#0")]
    assert store.rows("raw")["frame"] == ["ACK", "GAP", "BOOM", "1007"]
    assert store.rows("trades")["id"] == ["ACK", "GAP", "1007"]
    assert "KeyError" in store.rows("events")["detail"][0]
    assert proc.frames == 4 and proc.failures == 1
