"""Fixtures of the feed tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from feed_helpers import RecordingSink, TinyServer
from websockets.asyncio.server import serve


@pytest.fixture
async def tiny_server() -> AsyncIterator[TinyServer]:
    server = TinyServer()
    async with serve(server.handler, "127.0.0.1", 0, max_size=None) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        server.url = f"ws://127.0.0.1:{port}/ws/oss/spot"
        yield server


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
