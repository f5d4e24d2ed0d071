"""Shared fixtures of the protocol tests: the real spec registry and the captured frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.errors import SpecValidationError
from collector.specs import SpecRegistry, load_registry

FRAMES_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "frames" / "btse_frames.json"


def captured() -> dict[str, dict[str, str]]:
    """The real BTSE frames from the reference, by name."""
    data = json.loads(FRAMES_FILE.read_text())
    return {f["name"]: f for f in data["frames"]}


@pytest.fixture(scope="session")
def registry() -> SpecRegistry:
    return load_registry()


@pytest.fixture(scope="session")
def frames() -> dict[str, dict[str, str]]:
    return captured()


@dataclass(frozen=True)
class FakeChannel:
    product: str
    kind: str


@dataclass(frozen=True)
class FakeServer:
    name: str
    product: str


class OtcAwareRegistry:
    """The real registry plus an ``otc`` product (quote channel) and a programmable validator.

    Used where the test needs OTC (whose spec may not be in specs/ yet) or a validator that
    fails on purpose (spec drift).
    """

    def __init__(self, real: SpecRegistry, drift_kinds: tuple[str, ...] = ()) -> None:
        self.real = real
        self.drift_kinds = drift_kinds
        self.validated: list[tuple[str, Any]] = []

    def match(self, product: str, topic: str) -> tuple[Any, dict[str, str]] | None:
        if product == "otc":
            return (FakeChannel("otc", "otc_quote"), {}) if topic == "quote" else None
        return self.real.match(product, topic)

    def validate(self, channel: Any, payload: Any) -> None:
        self.validated.append((channel.kind, payload))
        if channel.kind in self.drift_kinds:
            raise SpecValidationError("data.extra is not allowed", "$.data.extra", "test:drift")

    def server(self, name: str) -> Any:
        if name.startswith("otc"):
            return FakeServer(name, "otc")
        return self.real.server(name)


@pytest.fixture
def make_registry(registry: SpecRegistry) -> Any:
    """``make_registry(drift_kinds=())`` -> an :class:`OtcAwareRegistry` over the real one."""

    def make(drift_kinds: tuple[str, ...] = ()) -> OtcAwareRegistry:
        return OtcAwareRegistry(registry, drift_kinds)

    return make
