import asyncio
import threading
from typing import Any

import pytest

from collector.pipeline.writer import BatchWriter


class FakeStore:
    def __init__(self, gate: threading.Event | None = None, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[str] = set()
        self.gate = gate
        self.fail_on = fail_on

    def append(self, table: str, columns: Any) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        if table == self.fail_on:
            raise OSError(28, "No space left on device")
        self.calls.append(("append", (table, dict(columns))))

    def flush(self) -> None:
        self.calls.append(("flush", None))

    def close(self) -> None:
        self.calls.append(("close", None))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_batches_are_written_in_order_on_one_worker_thread_and_closed_flushed() -> None:
    store = FakeStore()
    clock = Clock()
    writer = BatchWriter(store, flush_interval_s=5.0, clock=clock)
    await writer.submit({"trades": {"price": [1.0, 2.0]}, "events": {"kind": []}})
    await writer.submit({"trades": {"price": [3.0]}})
    await writer.close()
    assert store.calls == [
        ("append", ("trades", {"price": [1.0, 2.0]})),
        ("append", ("trades", {"price": [3.0]})),
        ("flush", None),
        ("close", None),
    ]
    assert store.threads and all(t.startswith("store-writer") for t in store.threads)
    assert threading.current_thread().name not in store.threads
    assert writer.stats.rows == {"trades": 3} and writer.stats.flushes == 1
    with pytest.raises(RuntimeError, match="closed"):
        await writer.submit({"trades": {"price": [1.0]}})


async def test_flush_happens_once_the_interval_has_passed() -> None:
    store = FakeStore()
    clock = Clock()
    writer = BatchWriter(store, flush_interval_s=5.0, clock=clock)
    await writer.submit({"trades": {"price": [1.0]}})
    clock.now = 5.0
    await writer.submit({"trades": {"price": [2.0]}})
    await writer.flush()  # a barrier: everything before it is done
    assert [c[0] for c in store.calls] == ["append", "append", "flush", "flush"]
    await writer.close()


async def test_backlog_is_bounded_submit_waits() -> None:
    gate = threading.Event()
    store = FakeStore(gate)
    writer = BatchWriter(store, max_pending=2, flush_interval_s=60.0)
    await writer.submit({"t": {"c": [1]}})
    await writer.submit({"t": {"c": [2]}})
    third = asyncio.create_task(writer.submit({"t": {"c": [3]}}))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done() and writer.backlog == 2
    gate.set()
    await asyncio.wait_for(third, 5)
    await writer.close()
    assert [c[1][1]["c"] for c in store.calls if c[0] == "append"] == [[1], [2], [3]]


async def test_a_failed_write_is_counted_and_the_writer_goes_on() -> None:
    store = FakeStore(fail_on="trades")
    writer = BatchWriter(store, flush_interval_s=60.0)
    await writer.submit({"trades": {"price": [1.0, 2.0]}})
    await writer.submit({"quotes": {"bid": [1.0]}})
    await writer.close()
    assert writer.stats.rows_lost == 2 and writer.stats.errors == 1
    assert "No space left" in writer.stats.last_error
    assert ("append", ("quotes", {"bid": [1.0]})) in store.calls
