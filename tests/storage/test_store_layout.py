from __future__ import annotations

from pathlib import Path

import pytest

from collector.errors import UnsafePathError
from collector.storage import layout
from collector.storage.schemas import load_schemas


@pytest.mark.parametrize("name", ["BTC-USD", "BTC-PERP", "ETH-USDT", "spot_oss", "1INCH-USD", "a.b"])
def test_safe_names_pass(name: str) -> None:
    assert layout.safe_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "a\\b", "/etc", "x\x00y", ".hidden", "-rf", "a..b",
     "BTC\u2010USD", "ＢＴＣ", "é", "a=b", "a b", "x" * 65, "\n", 5, None],
)
def test_unsafe_names_rejected(name: object) -> None:
    with pytest.raises(UnsafePathError):
        layout.safe_name(name, "symbol")


def test_partition_paths_and_names() -> None:
    schema = load_schemas()["trades"]
    part = layout.make_partition(schema, ("spot", "BTC-USD"), "2024-01-02")
    assert part.relpath() == Path("trades/product=spot/symbol=BTC-USD/date=2024-01-02")
    assert layout.date_of(1_704_153_600_000_000) == "2024-01-02"
    assert layout.date_of(1_704_153_599_999_999) == "2024-01-01"
    stem = layout.new_stem("trades", 1_704_153_600_500_001)
    assert stem.startswith("trades-20240102T000000.500001Z-")
    assert layout.stem_start(stem) == "20240102T000000.500001Z"
    d = Path("/d")
    # Only the published name matches a *.parquet glob.
    assert layout.final_path(d, stem).match("*.parquet")
    assert not layout.journal_path(d, stem).match("*.parquet")
    assert not layout.tmp_path(d, stem).match("*.parquet")
    for p in (layout.final_path(d, stem), layout.journal_path(d, stem), layout.tmp_path(d, stem)):
        assert layout.stem_of(p) == stem
    assert layout.stem_of(d / "notes.parquet") is None


def test_unsafe_route_value_rejected_before_disk(tmp_path: Path) -> None:
    schema = load_schemas()["trades"]
    with pytest.raises(UnsafePathError):
        layout.make_partition(schema, ("spot", "../../etc"), "2024-01-02")
