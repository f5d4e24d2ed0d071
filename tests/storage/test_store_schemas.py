from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from collector.errors import SchemaError
from collector.storage.schemas import load_schemas, parse_schema

TABLES = {"book_changes", "quotes", "book_snapshots", "trades", "otc_quotes", "events", "raw"}


def test_every_table_loads_with_arrow_types() -> None:
    schemas = load_schemas()
    assert set(schemas) == TABLES
    trades = schemas["trades"]
    assert trades.partition_by == ("product", "symbol", "date")
    assert trades.route_keys == ("product", "symbol")
    assert trades.arrow.field("local_timestamp").type == pa.timestamp("us", tz="UTC")
    assert trades.arrow.field("price").type == pa.float64()
    assert not trades.arrow.field("id").nullable
    assert schemas["book_snapshots"].arrow.field("bids[24].amount").type == pa.float64()
    assert schemas["raw"].partition_by == ("server", "date")


def _doc() -> dict:
    return yaml.safe_load((Path(__file__).parents[2] / "schemas" / "trades.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.pop("columns"), "columns"),
        (lambda d: d.update(colums=[]), "colums"),
        (lambda d: d["columns"][0].update(type="decimal"), "columns[0].type"),
        (lambda d: d["columns"].append(dict(d["columns"][0])), "columns[9].name"),
        (lambda d: d["columns"][2].pop("nullable"), "columns[2].nullable"),
        (lambda d: d.update(partition_by=["product", "venue"]), "partition_by"),
        (lambda d: d["columns"][1].update(nullable=True), "partition_by"),
    ],
)
def test_broken_schema_names_the_key(mutate, key: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(SchemaError) as info:
        parse_schema(doc, "schemas/trades.yaml")
    assert info.value.key == key
    assert info.value.file == "schemas/trades.yaml"


def test_schema_dir_without_yaml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no table schema"):
        load_schemas(tmp_path)
