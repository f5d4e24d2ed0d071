"""How fast the simulated exchange alone can send, so later benchmarks know it is not the limit.

Three numbers, measured in the same run:

* **bulk** (benchmark mode): the simulator pre-builds a snapshot + N deltas, serializes the
  WebSocket frames once and writes them in ~1 MiB chunks; frames/s from the first write to
  the last drain.
* **per-frame**: the same frames, one ``await ws.send()`` each (the plain websockets way);
  the baseline the bulk ratio is reported against.
* **live**: the normal mode's cost to generate a market event, encode its frames and queue
  them for one subscriber (no socket), as events/s.

The receiving side is a separate process that reads raw bytes from a plain TCP socket (no
WebSocket parsing), so the server is what gets measured; frames/s are counted from the
subscribe request to the last byte read.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

TITLE = "simulator send throughput (frames/s the simulated exchange alone reaches)"

BULK_FRAMES = 200_000
PER_FRAME_FRAMES = 100_000
LIVE_EVENTS = 30_000

_READER = r"""
import base64, os, socket, sys, time
host, port, path, topic, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.create_connection((host, port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
got = len(buf.split(b"\r\n\r\n", 1)[1])
payload = ('{"op":"subscribe","args":["%s"]}' % topic).encode()
mask = os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
started = time.perf_counter()
chunk = bytearray(1 << 20)
while got < total:
    n = s.recv_into(chunk)
    if not n:
        break
    got += n
print(got, time.perf_counter() - started, flush=True)
"""


async def _burst(bulk: bool, frames: int) -> dict[str, Any]:
    from collector.simulator import Simulator

    async with Simulator(seed=1, symbols={"spot": ["BTC-USD"]}, rate=0, idle_timeout=0,
                         benchmark_frames=frames, benchmark_bulk=bulk) as sim:
        encoded, chunks = sim._bench[("spot", "BTC-USD")]
        topic = "update:BTC-USD_0"
        ack = json.dumps({"event": "subscribe", "channel": [topic]}, separators=(",", ":"))
        total = sum(len(c) for c in chunks) + len(ack) + 2
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _READER, sim.host, str(sim.port), "/ws/oss/spot", topic,
            str(total), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        await sim.wait_for(lambda: bool(sim.bench_stats))
        stats = sim.bench_stats[0]
        received, reader_seconds = out.decode().split()
        if int(received) < total:
            raise RuntimeError(f"reader got {received} of {total} bytes")
        # Headline: subscribe sent -> last byte read, seen by the reader (includes the round
        # trip and the snapshot); the server-side write time is reported beside it.
        seconds = float(reader_seconds)
        return {"frames": len(encoded), "bytes": total, "received_bytes": int(received),
                "seconds": round(seconds, 4), "frames_per_s": round(len(encoded) / seconds),
                "server_write_seconds": round(stats["seconds"], 4),
                "server_write_frames_per_s": round(stats["frames_per_s"])}


def _live(events: int) -> dict[str, Any]:
    from collector.simulator.exchange import Exchange
    from collector.simulator.session import TopicRef
    from collector.specs import load_registry

    class Sink:
        id = 1

        def __init__(self) -> None:
            self.frames = 0

        def enqueue(self, frame: str) -> None:
            self.frames += 1

    exchange = Exchange(load_registry(), 1, {"spot": ["BTC-USD"]}, time.time)
    sink = Sink()
    for topic, kind, grouping in (("update:BTC-USD_0", "book", 0), ("snapshotL1:BTC-USD", "l1", None)):
        exchange.subscribe(sink, TopicRef(topic, kind, "spot", "BTC-USD", "BTC-USD", grouping))
    started = time.perf_counter()
    for _ in range(events):
        exchange.advance(("spot", "BTC-USD"))
    seconds = time.perf_counter() - started
    return {"events": events, "frames": sink.frames, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds), "us_per_event": round(seconds / events * 1e6, 2)}


def run() -> dict[str, Any]:
    bulk = asyncio.run(_burst(True, BULK_FRAMES))
    per_frame = asyncio.run(_burst(False, PER_FRAME_FRAMES))
    live = _live(LIVE_EVENTS)
    ratio = bulk["frames_per_s"] / per_frame["frames_per_s"]
    return {
        "bulk": bulk,
        "per_frame": per_frame,
        "live": live,
        "bulk_vs_per_frame": round(ratio, 2),
        "summary": [
            f"bulk (benchmark mode): {bulk['frames_per_s']:,} frames/s "
            f"({bulk['frames']:,} frames, {bulk['bytes'] / 1e6:.1f} MB in {bulk['seconds']} s, "
            f"as received by a raw-socket reader)",
            f"per-frame await send:  {per_frame['frames_per_s']:,} frames/s "
            f"(bulk is {ratio:.1f}x faster)",
            f"live mode generation:  {live['events_per_s']:,} market events/s "
            f"({live['us_per_event']} us/event incl. encoding, one subscriber)",
        ],
    }
