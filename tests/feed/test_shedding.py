"""Feed + pipeline: a full frame queue sheds, and the hole is recorded and healed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from feed_helpers import JsonFrames, TinyServer

from collector.feed.supervisor import Supervisor
from collector.pipeline.processor import Processor
from collector.pipeline.queue import FrameQueue
from collector.pipeline.writer import BatchWriter
from collector.protocol.rows import TableBuffers

TOPICS = ["update:BTC-USD_0", "update:ETH-USD_0"]


class CountingNormalizer:
    def __init__(self) -> None:
        self.buffers = TableBuffers()
        self.frames: list[str] = []

    def feed(self, conn_id: str, server: str, data: str, ts: int) -> list[Any]:
        self.frames.append(data)
        return []

    def on_subscribe_sent(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_disconnect(self, *args: Any, **kwargs: Any) -> None:
        pass


class MemoryStore:
    def __init__(self) -> None:
        self.events: list[dict[str, list[Any]]] = []

    def append(self, table: str, columns: Any) -> None:
        if table == "events":
            self.events.append({k: list(v) for k, v in columns.items()})

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_frames_over_the_bound_are_shed_recorded_and_the_topics_resubscribed(
    tiny_server: TinyServer,
) -> None:
    queue = FrameQueue(max_frames=10)
    sup = Supervisor(
        {"spot_oss": TOPICS}, {"spot_oss": tiny_server.url}, queue, lambda server: JsonFrames()
    )
    norm, store = CountingNormalizer(), MemoryStore()
    proc = Processor(queue, norm, BatchWriter(store), sup)
    sup.start()
    try:
        conn = sup.connections["spot_oss#0"]
        ws = await tiny_server.wait_sessions(1)
        await tiny_server.wait_received(lambda s, t: "subscribe" in t)
        await conn.connected.wait()
        for i in range(100):  # the processing stage is not running: the queue fills up
            await ws.send(json.dumps({"i": i}))
        async with asyncio.timeout(10):
            while conn.stats.frames < 101:  # ack + 100 received
                await asyncio.sleep(0.005)
        assert queue.depth == 10 and queue.frames_shed == 91
        await proc.drain()
        await tiny_server.wait_received(lambda s, t: '"unsubscribe"' in t and "ETH" in t)
    finally:
        await sup.stop()
        await proc.writer.close()
    assert len(norm.frames) == 10  # the first ten frames (ack included), in order
    shed = [
        e
        for batch in store.events
        for e in zip(batch["kind"], batch["count"], batch["connection"], strict=True)
        if e[0] == "shed"
    ]
    assert shed == [("shed", 91, "spot_oss#0")]
    ops = [json.loads(t) for _, t in tiny_server.received if t != "ping"]
    assert ops[1:] == [
        {"op": "unsubscribe", "args": ["update:BTC-USD_0"]},
        {"op": "subscribe", "args": ["update:BTC-USD_0"]},
        {"op": "unsubscribe", "args": ["update:ETH-USD_0"]},
        {"op": "subscribe", "args": ["update:ETH-USD_0"]},
    ]
