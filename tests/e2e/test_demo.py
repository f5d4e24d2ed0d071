import argparse
from pathlib import Path

import pytest

from collector.commands import demo

pytestmark = pytest.mark.e2e


def test_demo_collects_heals_the_faults_and_rebuilds_every_book(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        seconds=8.0, data_dir=tmp_path / "store", rate=50.0, seed=3, log_level="info"
    )
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("MATCH") == 3 and "DIFFERS" not in out
    for kind in ("gap", "crossed", "disconnected", "stale", "decode_error"):
        assert f"\n{kind} " in out, kind
    assert (tmp_path / "store" / "book_changes").is_dir()
    assert out.count("  t=") == 2  # progress at 5 s and at the end, once each (was repeated)


def test_progress_marks_one_line_every_5_s_and_one_at_the_end() -> None:
    assert demo.progress_marks(30.0) == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert demo.progress_marks(8.0) == [5.0, 8.0]
    assert demo.progress_marks(5.0) == [5.0]
