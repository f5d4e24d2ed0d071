"""The command line: dispatch, usage errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from collector import cli
from collector.errors import EXIT_USAGE


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == EXIT_USAGE
    assert "usage: btse-collector" in capsys.readouterr().err


def test_every_command_has_help() -> None:
    parser = cli.build_parser()
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_python_dash_m_runs_the_same_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("btse-collector ")


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    # `btse-collector specs | head -1`: the reader is gone before the table is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "collector", "specs"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
