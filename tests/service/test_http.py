"""Metrics exposition and the /healthz + /metrics server on a real port (port 0)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.commands.status import status
from collector.config import HealthConfig
from collector.service.health import HealthState
from collector.service.http import HealthServer
from collector.service.metrics import Metrics

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_counters_and_health_gauges() -> None:
    clock = Clock()
    health = HealthState(HealthConfig(), clock=clock, started=T0)
    key = health.register_stream("spot", "book", "BTC-USD", "update:BTC-USD_0", now=T0)
    health.set_state(key, "live", T0)
    health.message(key, T0 + 1, 5)
    health.set_queue("frames", 7, 100_000)
    health.set_open_files(4)
    health.set_loop_lag(0.002)
    health.flushed(T0 + 2)
    m = Metrics()
    m.bind_health(health)
    m.frames_received("spot_oss", 120, nbytes=4096)
    m.rows_written("book_changes", 500)
    m.reconnect("spot_oss", "stale")
    m.sequence_gap("spot", "BTC-USD", 2)
    m.resync("spot", "BTC-USD", "gap")
    m.duplicate("spot", "BTC-USD", "trades", 3)
    m.shed_rows("raw", 10)
    m.decode_error("spot", "schema")
    m.exchange_error("spot_oss", 1007)
    m.observe_flush(0.2)
    m.observe_loop_lag(0.01)
    clock.now = T0 + 3
    got = samples(m.render().decode())
    lbl = (("kind", "book"), ("product", "spot"), ("symbol", "BTC-USD"))
    assert got[("btse_collector_frames_received_total", (("server", "spot_oss"),))] == 120
    assert got[("btse_collector_bytes_received_total", (("server", "spot_oss"),))] == 4096
    assert got[("btse_collector_rows_written_total", (("table", "book_changes"),))] == 500
    assert (
        got[("btse_collector_reconnects_total", (("reason", "stale"), ("server", "spot_oss")))] == 1
    )
    assert (
        got[("btse_collector_sequence_gaps_total", (("product", "spot"), ("symbol", "BTC-USD")))]
        == 2
    )
    assert (
        got[
            (
                "btse_collector_resyncs_total",
                (("product", "spot"), ("reason", "gap"), ("symbol", "BTC-USD")),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "btse_collector_duplicates_total",
                (("kind", "trades"), ("product", "spot"), ("symbol", "BTC-USD")),
            )
        ]
        == 3
    )
    assert got[("btse_collector_shed_rows_total", (("table", "raw"),))] == 10
    assert (
        got[("btse_collector_decode_errors_total", (("reason", "schema"), ("server", "spot")))] == 1
    )
    assert (
        got[("btse_collector_exchange_errors_total", (("code", "1007"), ("server", "spot_oss")))]
        == 1
    )
    assert got[("btse_collector_flush_duration_seconds_count", ())] == 1
    assert got[("btse_collector_event_loop_lag_seconds_count", ())] == 1
    assert got[("btse_collector_stream_last_message_timestamp_seconds", lbl)] == T0 + 1
    assert got[("btse_collector_stream_silence_seconds", lbl)] == 2.0
    assert got[("btse_collector_stream_fresh", lbl)] == 1.0
    assert got[("btse_collector_stream_state", (*lbl[:2], ("state", "live"), lbl[2]))] == 1.0
    assert got[("btse_collector_queue_depth", (("queue", "frames"),))] == 7
    assert got[("btse_collector_queue_capacity", (("queue", "frames"),))] == 100_000
    assert got[("btse_collector_open_files", ())] == 4
    assert got[("btse_collector_last_flush_timestamp_seconds", ())] == T0 + 2
    assert got[("btse_collector_event_loop_lag_last_seconds", ())] == 0.002
    assert got[("btse_collector_healthy", ())] == 1.0
    assert got[("btse_collector_streams_fresh", ())] == 1.0


def test_two_metrics_objects_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.rows_written("trades", 1)
    assert b"rows_written_total{" not in b.render()
    assert b'btse_collector_rows_written_total{table="trades"} 1.0' in a.render()


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, HealthState, Clock, Metrics]]:
    clock = Clock()
    health = HealthState(HealthConfig(), clock=clock, started=T0)
    metrics = Metrics()
    metrics.bind_health(health)
    server = HealthServer(health, metrics, host="127.0.0.1", port=0)
    host, port = await server.start()
    assert host == "127.0.0.1" and port > 0
    yield server, health, clock, metrics
    await server.stop()


async def test_healthz_and_metrics_show_a_stall(
    served: tuple[HealthServer, HealthState, Clock, Metrics],
) -> None:
    server, health, clock, _ = served
    key = health.register_stream("spot", "book", "BTC-USD", "update:BTC-USD_0", now=T0)
    health.set_state(key, "live", T0)
    health.message(key, T0 + 1)
    health.flushed(T0 + 1)
    clock.now = T0 + 2
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["healthy"] is True
        assert body["streams"][0]["symbol"] == "BTC-USD" and body["streams"][0]["age_s"] == 1.0

        clock.now = T0 + 62  # the book has been silent 61 s: stale
        health.flushed(T0 + 62)
        async with session.get(server.url + "/healthz") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body["healthy"] is False
        assert body["reasons"] == ["stale: spot BTC-USD book silent 61s > 60s"]
        assert body["streams"][0]["fresh"] is False
        async with session.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        got = samples(text)
        lbl = (("kind", "book"), ("product", "spot"), ("symbol", "BTC-USD"))
        assert got[("btse_collector_stream_fresh", lbl)] == 0.0
        assert got[("btse_collector_stream_silence_seconds", lbl)] == 61.0
        assert got[("btse_collector_healthy", ())] == 0.0
        async with session.get(server.url + "/nope") as resp:
            assert resp.status == 404


async def test_status_command_renders_the_table(
    served: tuple[HealthServer, HealthState, Clock, Metrics],
) -> None:
    server, health, clock, _ = served
    key = health.register_stream(
        "futures", "trades", "BTC-PERP", "tradeHistoryApiV3:BTC-PERP", now=T0
    )
    health.set_state(key, "live", T0)
    health.message(key, T0 + 5, 42)
    health.flushed(T0 + 5)
    clock.now = T0 + 6
    out, err = io.StringIO(), io.StringIO()
    # status() is synchronous (urllib); run it in a thread so the server keeps serving
    import asyncio

    code = await asyncio.to_thread(status, server.url, 5.0, out=out, err=err)
    text = out.getvalue()
    assert code == 0, err.getvalue()
    assert text.startswith(f"btse-collector at {server.url}: HEALTHY - 1/1 streams live")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("PRODUCT"))
    row = lines[lines.index(header) + 1].split()
    assert row == [
        "futures",
        "trades",
        "BTC-PERP",
        "live",
        "yes",
        "1s",
        "60m",
        "42",
        "tradeHistoryApiV3:BTC-PERP",
    ]

    clock.now = T0 + 3700
    health.flushed(T0 + 3700)
    out = io.StringIO()
    code = await asyncio.to_thread(status, server.url, 5.0, out=out, err=err)
    assert code == 1
    assert "UNHEALTHY" in out.getvalue() and "STALE" in out.getvalue()
    assert "- stale: futures BTC-PERP trades silent 3695s > 3600s" in out.getvalue()

    out = io.StringIO()
    code = await asyncio.to_thread(status, server.url, 5.0, as_json=True, out=out, err=err)
    assert code == 1 and json.loads(out.getvalue())["healthy"] is False


def test_status_unreachable_exits_1() -> None:
    err = io.StringIO()
    assert status("http://127.0.0.1:1", 2.0, out=io.StringIO(), err=err) == 1
    assert "UNREACHABLE" in err.getvalue()
    assert status("file:///etc/passwd", 2.0, out=io.StringIO(), err=err) == 1


async def test_port_in_use_raises_oserror(
    served: tuple[HealthServer, HealthState, Clock, Metrics],
) -> None:
    server, health, _, _ = served
    assert server.address is not None
    other = HealthServer(health, None, host="127.0.0.1", port=server.address[1])
    with pytest.raises(OSError):
        await other.start()
