"""Helpers for simulator tests: a fake clock and a raw websockets client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

WALL = 1_790_134_428.0


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client(url: str) -> Any:
    return connect(url, max_queue=None, close_timeout=1, compression=None, max_size=None)


async def recv_json(ws: ClientConnection) -> Any:
    text = await ws.recv()
    assert isinstance(text, str)
    return json.loads(text)


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool]) -> Any:
    while True:
        text = await ws.recv()
        if text == "pong":
            msg: Any = "pong"
        else:
            msg = json.loads(text)
        if pred(msg):
            return msg


async def send(ws: ClientConnection, obj: Any) -> None:
    await ws.send(obj if isinstance(obj, str) else json.dumps(obj))


async def subscribe(ws: ClientConnection, *topics: str) -> Any:
    await send(ws, {"op": "subscribe", "args": list(topics)})
    return await recv_json(ws)


def apply(book: dict[str, dict[str, str]], data: dict[str, Any]) -> None:
    for side in ("bids", "asks"):
        for price, size in data[side]:
            if float(size) == 0:
                book[side].pop(price, None)
            else:
                book[side][price] = size


def as_book(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {"bids": dict(map(tuple, data["bids"])), "asks": dict(map(tuple, data["asks"]))}


def truth_dict(book: Any) -> dict[str, dict[str, str]]:
    return {"bids": dict(book.bids), "asks": dict(book.asks)}
