from pathlib import Path

import pytest

from collector.cli import main

pytestmark = pytest.mark.e2e


def test_run_refuses_a_bad_config_with_exit_78_before_touching_the_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "bad.yaml"
    config.write_text(f"data_dir: {data}\nmarkets:\n  - product: spot\n    symbls: [BTC-USD]\n")
    assert main(["run", "--config", str(config), "--no-http"]) == 78
    err = capsys.readouterr().err
    assert "symbls" in err and "symbols" in err
    assert not data.exists()


def test_run_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--data-dir" in out and "--no-http" in out
