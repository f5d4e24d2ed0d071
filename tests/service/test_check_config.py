"""``btse-collector check-config``: summary on success, every problem and exit 78 on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector import cli
from collector.errors import EXIT_CONFIG

REPO = Path(__file__).resolve().parents[2]


def test_default_config_is_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("collector.specs")
    text = (
        (REPO / "deploy" / "collector.yaml").read_text().replace("./data", str(tmp_path / "data"))
    )
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(text)
    assert cli.main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {cfg}")
    assert "streams       12 (book 4, l1 4, trades 4)" in out
    assert "connections   4 planned" in out
    assert "spot_oss             1 × wss://ws.btse.com/ws/oss/spot  (4 topics)" in out


def test_bad_config_exits_78_with_file_line_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "data_dir: ./data\n"
        "markets:\n"
        "  - product: spot\n"
        "    symbls: [BTC-USD]\n"
        "    channels: [book]\n"
        "  - product: futures\n"
        "    symbols: [../escape]\n"
        "    channels: [l1]\n"
    )
    assert cli.main(["check-config", "--config", str(cfg)]) == EXIT_CONFIG
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{cfg}: 2 problems:"
    assert err[1] == (
        f"  {cfg}:4: markets[0].symbls: unknown key (valid keys: product, symbols, channels, "
        "groupings) (did you mean 'symbols'?)"
    )
    assert err[2].startswith(f"  {cfg}:7: markets[1].symbols[0]: invalid symbol '../escape'")
    assert not (tmp_path / "data").exists()  # nothing touched the disk


def test_missing_otc_credentials_exit_78(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BTSE_API_KEY", "BTSE_API_SECRET", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    cfg = tmp_path / "otc.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}\notc:\n  quotes: [{{symbol: BTC-USD, quantity: 1, currency: BTC}}]\n"
    )
    assert cli.main(["check-config", "--config", str(cfg)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "otc.credentials: OTC quotes need BTSE API credentials" in err


def test_unwritable_data_dir_exit_78(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {blocker}/data\nmarkets: [{{product: spot, symbols: [BTC-USD], channels: [l1]}}]\n"
    )
    assert cli.main(["check-config", "--config", str(cfg)]) == EXIT_CONFIG
    assert "data_dir:" in capsys.readouterr().err
    assert cli.main(["check-config", "--config", str(cfg), "--skip-data-dir"]) == 0


def test_console_script_exit_code(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data_dir: [\n")
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 78
    assert f"{cfg}:2: (yaml): invalid YAML" in proc.stderr


def test_otc_plan_with_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("collector.specs")
    creds = tmp_path / "creds"
    creds.write_text("BTSE_API_KEY=abc\nBTSE_API_SECRET=very-secret\n")
    monkeypatch.delenv("BTSE_API_KEY", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    creds.rename(tmp_path / "btse")
    cfg = tmp_path / "otc.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}/data\n"
        "otc:\n  quotes:\n    - {symbol: BTC-USD, quantity: 1, currency: BTC}\n"
        "    - {symbol: BTC-USD, quantity: 5, currency: BTC, side: buy}\n"
    )
    assert cli.main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "otc quotes    BTC-USD 1 BTC, BTC-USD 5 BTC" in out
    assert "otc                  1 × wss://ws.btse.com/ws/otc  (2 quotes, authenticated)" in out
    assert "very-secret" not in out


def test_connection_plan_is_the_daemons(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary comes from feed.topics + feed.planner: OTC quotes spread like topics."""
    from collector.commands.check_config import plan_connections
    from collector.config import load_config
    from collector.feed.planner import plan
    from collector.feed.topics import subscriptions
    from collector.specs import load_registry

    monkeypatch.setenv("BTSE_API_KEY", "abcdefghijklmnop")
    monkeypatch.setenv("BTSE_API_SECRET", "very-secret")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}/data\n"
        "markets:\n"
        "  - {product: spot, symbols: [BTC-USD, ETH-USD], channels: [book], groupings: [0, 1]}\n"
        "otc:\n  quotes:\n"
        "    - {symbol: BTC-USD, quantity: 1, currency: BTC}\n"
        "    - {symbol: BTC-USD, quantity: 2, currency: BTC}\n"
        "    - {symbol: ETH-USD, quantity: 3, currency: ETH}\n"
        "connection: {max_topics_per_connection: 2}\n"
    )
    config = load_config(cfg)
    registry = load_registry()
    rows = plan_connections(config, registry)
    assert rows == [
        ("otc", "wss://ws.btse.com/ws/otc", 2, "3 quotes, authenticated"),
        ("spot_oss", "wss://ws.btse.com/ws/oss/spot", 2, "4 topics"),
    ]
    daemon_plan = plan(subscriptions(config, registry).by_server(), 2)
    assert sum(r[2] for r in rows) == len(daemon_plan.connections) == 4
    assert cli.main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "connections   4 planned (max 2 topics each)" in out
    assert "otc                  2 × wss://ws.btse.com/ws/otc  (3 quotes, authenticated)" in out
