"""Helpers for feed tests: a tiny scriptable BTSE-like server (websockets) and a recording sink."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection

from collector.feed.connection import ConnEvent


@dataclass
class TinyServer:
    """Answers ping with pong and acks subscribes, unless told otherwise."""

    answer_pings: bool = True
    login_ok: bool | None = None  # None: not an auth server
    after_login: str | None = None  # a frame sent right after every successful login ack
    received: list[tuple[int, str]] = field(default_factory=list)  # (session, text)
    sessions: list[ServerConnection] = field(default_factory=list)
    session_opened: asyncio.Event = field(default_factory=asyncio.Event)
    on_message: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handler(self, ws: ServerConnection) -> None:
        self.sessions.append(ws)
        index = len(self.sessions) - 1
        self.session_opened.set()
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                self.received.append((index, text))
                self.on_message.set()
                if text == "ping":
                    if self.answer_pings:
                        await ws.send("pong")
                    continue
                frame = json.loads(text)
                if frame.get("op") in ("subscribe", "unsubscribe"):
                    await ws.send(json.dumps({"event": frame["op"], "channel": frame["args"]}))
                elif frame.get("op") == "authKeyExpires" and self.login_ok is not None:
                    await ws.send(json.dumps({"event": "login", "success": self.login_ok}))
                    if self.login_ok and self.after_login is not None:
                        await ws.send(self.after_login)
        except websockets.ConnectionClosed:
            pass

    async def wait_sessions(self, n: int) -> ServerConnection:
        while len(self.sessions) < n:
            self.session_opened.clear()
            await asyncio.wait_for(self.session_opened.wait(), 10)
        return self.sessions[n - 1]

    async def wait_received(self, predicate: Any) -> None:
        while not any(predicate(s, t) for s, t in self.received):
            self.on_message.clear()
            await asyncio.wait_for(self.on_message.wait(), 10)


class RecordingSink:
    """The FrameSink of the tests: keeps frames and events in arrival order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str | bytes, int] | ConnEvent] = []
        self.changed = asyncio.Event()

    def put_frame(self, conn_id: str, server: str, data: str | bytes, local_ts_us: int) -> None:
        self.items.append((conn_id, server, data, local_ts_us))
        self.changed.set()

    def put_event(self, event: ConnEvent) -> None:
        self.items.append(event)
        self.changed.set()

    @property
    def frames(self) -> list[str | bytes]:
        return [i[2] for i in self.items if isinstance(i, tuple)]

    @property
    def events(self) -> list[ConnEvent]:
        return [i for i in self.items if isinstance(i, ConnEvent)]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    async def wait_for(self, predicate: Any) -> None:
        while not predicate(self):
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


class JsonFrames:
    """Spot/futures style subscribe frames."""

    def subscribe(self, topics: Sequence[str]) -> list[str]:
        return [json.dumps({"op": "subscribe", "args": list(topics)})]

    def unsubscribe(self, topics: Sequence[str]) -> list[str]:
        return [json.dumps({"op": "unsubscribe", "args": list(topics)})]
