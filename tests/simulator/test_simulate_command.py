"""``btse-collector simulate`` as a subprocess: prints its URLs, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from sim_helpers import client, recv_json, subscribe


async def test_simulate_serves_and_dumps_truth(tmp_path: Path) -> None:
    dump = tmp_path / "truth.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector", "simulate", "--port", "0", "--rate", "50",
        "--symbols", "spot:BTC-USD", "futures:BTC-PERP", "--fault", "gap@0:product=spot",
        "--truth-dump", str(dump),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    urls = {}
    while True:
        line = (await proc.stdout.readline()).decode()
        assert line, "simulate exited early"
        if line.startswith("serving"):
            break
        name, url = line.split()
        urls[name] = url
    assert urls["spot_oss"].endswith("/ws/oss/spot") and urls["otc"].endswith("/ws/otc")
    async with client(urls["spot_oss"]) as ws:
        await subscribe(ws, "update:BTC-USD_0")
        snap = await recv_json(ws)
        assert snap["data"]["type"] == "snapshot"
        delta = await recv_json(ws)  # the market moves; its first delta was lost to the gap
        assert delta["data"]["type"] == "delta"
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
    truth = json.loads(dump.read_text())
    assert {b["symbol"] for b in truth["books"]} == {"BTC-USD", "BTC-PERP"}
    assert [f["kind"] for f in truth["faults"]] == ["gap"]


async def test_bad_fault_is_a_usage_error() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector", "simulate", "--fault", "meteor@3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"unknown kind 'meteor'" in err
