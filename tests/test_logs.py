"""Logging: JSON lines (with journald priority), console output, stdlib routing, redaction."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from collector import logs
from collector.config import Credentials


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "btse-collector"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


def test_json_lines_with_journal_priority_prefix() -> None:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf, journal=True)
    log = structlog.get_logger("collector.feed")
    log.info("ws_connected", conn="spot_oss#0", url="wss://ws.btse.com/ws/oss/spot")
    log.warning("gap", topic="update:BTC-USD_0", expected=10, received=12)
    log.error("writer_failed")
    log.debug("not shown")
    out = lines(buf)
    assert [line[:3] for line in out] == ["<6>", "<4>", "<3>"]
    first = json.loads(out[0][3:])
    assert first["event"] == "ws_connected" and first["conn"] == "spot_oss#0"
    assert first["level"] == "info" and first["logger"] == "collector.feed"
    assert first["timestamp"].endswith("Z")
    assert json.loads(out[1][3:])["expected"] == 10


def test_json_without_journal_has_no_prefix() -> None:
    buf = io.StringIO()
    logs.configure("info", "auto", stream=buf, journal=False)  # StringIO is not a terminal
    structlog.get_logger().info("flush", rows=5)
    (line,) = lines(buf)
    assert json.loads(line) == {**json.loads(line), "event": "flush", "rows": 5}


def test_stdlib_libraries_go_through_the_same_renderer() -> None:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf, journal=True)
    logging.getLogger("aiohttp.server").error("Error handling request %s", "/x")
    logging.getLogger("websockets.client").debug("frame")  # below INFO: never
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    out = lines(buf)
    assert len(out) == 2
    first = json.loads(out[0][3:])
    assert out[0].startswith("<3>")
    assert first["event"] == "Error handling request /x" and first["logger"] == "aiohttp.server"
    second = json.loads(out[1][3:])
    assert "RuntimeError: boom" in second["exception"]


def test_debug_level_keeps_websockets_frames_quiet() -> None:
    buf = io.StringIO()
    logs.configure("debug", "json", stream=buf, journal=False)
    logging.getLogger("websockets.client").debug("< TEXT '{...}' [120 bytes]")
    structlog.get_logger().debug("ours")
    assert [json.loads(line)["event"] for line in lines(buf)] == ["ours"]


def test_console_renderer() -> None:
    buf = io.StringIO()
    logs.configure("info", "console", stream=buf, journal=False)
    structlog.get_logger("x").info("ws_connected", conn="spot#0")
    (line,) = lines(buf)
    assert "ws_connected" in line and "conn=spot#0" in line and not line.startswith("{")


def test_secrets_are_never_rendered() -> None:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf, journal=False)
    creds = Credentials("abcd-very-long-key", "top-secret-value", "environment")
    structlog.get_logger().info(
        "auth",
        api_secret="top-secret-value",
        api_key="abcd-very-long-key",
        signature="f00",
        creds=creds,
        api_key_env="BTSE_API_KEY",
    )
    logging.getLogger("lib").info("extra", extra={"password": "hunter2"})
    text = buf.getvalue()
    assert "top-secret-value" not in text and "abcd-very-long-key" not in text
    assert "hunter2" not in text and "f00" not in text
    record = json.loads(lines(buf)[0])
    assert record["api_secret"] == "***" and record["signature"] == "***"
    assert record["api_key_env"] == "BTSE_API_KEY"  # names where a secret lives: kept


def test_journal_detection_compares_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as f:
        st = os.fstat(f.fileno())
        assert logs.journal_stream_is(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.journal_stream_is(f, {"JOURNAL_STREAM": "1:2"})
        assert not logs.journal_stream_is(f, {})
    assert not logs.journal_stream_is(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError, match="log level"):
        logs.configure("loud")
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "xml")
