"""The systemd units: required directives (pure parse) and ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ("btse-collector.service", "btse-collector@.service")
INSTALLED_BIN = "/opt/btse-collector/venv/bin/btse-collector"


def parse(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}: expected exactly one, got {found}"
    return found[0]


@pytest.mark.parametrize("name", UNITS)
def test_required_directives(name: str) -> None:
    unit = parse(DEPLOY / name)
    svc = unit["Service"]
    config = "/etc/btse-collector/%i.yaml" if "@" in name else "/etc/btse-collector/collector.yaml"
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "78",
        "TimeoutStopSec": "30",
        "User": "btse-collector",
        "LoadCredential": "btse:/etc/btse-collector/credentials",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ExecStartPre": f"{INSTALLED_BIN} check-config --config {config}",
        "ExecStart": f"{INSTALLED_BIN} run --config {config}",
        "StateDirectory": "btse-collector/%i" if "@" in name else "btse-collector",
    }
    for key, value in expected.items():
        assert one(svc, key) == value, key
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    assert one(unit["Unit"], "StartLimitIntervalSec") == "0"
    # the daemon's shutdown deadline (20 s) must fit in systemd's stop timeout
    daemon = pytest.importorskip("collector.service.daemon")

    assert (
        daemon.SHUTDOWN_TIMEOUT_S < 30
        and int(one(svc, "TimeoutStopSec")) > daemon.SHUTDOWN_TIMEOUT_S
    )


def test_template_differs_only_by_instance() -> None:
    plain = parse(DEPLOY / UNITS[0])["Service"]
    template = parse(DEPLOY / UNITS[1])["Service"]
    normalized = [
        (k, v.replace("%i.yaml", "collector.yaml").replace("btse-collector/%i", "btse-collector"))
        for k, v in template
    ]
    assert normalized == plain


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", [*UNITS, "btse-collector@shard1.service"])
def test_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    source = DEPLOY / (UNITS[1] if name.startswith("btse-collector@") else name)
    # verify checks that ExecStart= exists: point it at this checkout's entry point
    exe = Path(sys.executable).with_name("btse-collector")
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    (tmp_path / name).write_text(source.read_text().replace(INSTALLED_BIN, str(exe)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # verify exits 0 even for unknown keys; any output is a finding
    assert proc.returncode == 0 and proc.stderr.strip() == "" and proc.stdout.strip() == "", (
        proc.stdout + proc.stderr
    )
