"""Fixtures for simulator tests: a simulator on port 0 driven by tick() and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sim_helpers import WALL, FakeClock

from collector.simulator import Simulator


@pytest.fixture
def mono() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(mono: FakeClock) -> AsyncIterator[Simulator]:
    async with Simulator(
        seed=1,
        symbols={"spot": ["BTC-USD", "ETH-USD"], "futures": ["BTC-PERP"]},
        rate=0,
        clock=lambda: WALL,
        monotonic=mono,
        idle_timeout=60.0,
        api_keys={"k1": "s1"},
    ) as s:
        yield s


