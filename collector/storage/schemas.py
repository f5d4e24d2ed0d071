"""Table schemas: ``schemas/<table>.yaml`` → validated, frozen :class:`TableSchema` with Arrow types.

The YAML files are the contract between the normalizer (which fills column batches) and the
writer (which refuses batches that do not match). A broken file is a :class:`SchemaError`
naming the file and the key, raised at load time, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from collector.errors import SchemaError
from collector.paths import data_dir

#: YAML type name → Arrow type. ``timestamp_us`` values are int microseconds since the epoch (UTC).
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "timestamp_us": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}

#: YAML type name → DuckDB type (for empty views and documentation).
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "timestamp_us": "TIMESTAMP WITH TIME ZONE",
    "binary": "BLOB",
}

#: Partition keys that are not columns of the file but derived: ``date`` from local_timestamp.
DERIVED_PARTITION_KEYS = frozenset({"date"})

_TOP_KEYS = {"table", "description", "partition_by", "sort_key", "columns"}
_COLUMN_KEYS = {"name", "type", "nullable", "description"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class TableSchema:
    """One table of the store, as declared in ``schemas/<name>.yaml``."""

    name: str
    description: str
    partition_by: tuple[str, ...]
    sort_key: tuple[str, ...]
    columns: tuple[Column, ...]
    arrow: pa.Schema
    source: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def route_keys(self) -> tuple[str, ...]:
        """Partition keys that are columns of the rows (every key except ``date``)."""
        return tuple(k for k in self.partition_by if k not in DERIVED_PARTITION_KEYS)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


def default_schemas_dir() -> Path:
    """``$BTSE_COLLECTOR_SCHEMAS`` or the repository's ``schemas/`` folder (or the copy an
    installed wheel carries: :func:`collector.paths.data_dir`)."""
    return data_dir("schemas", "BTSE_COLLECTOR_SCHEMAS", "*.yaml")


def parse_schema(doc: Any, source: str) -> TableSchema:
    """Validate one parsed YAML document and build its :class:`TableSchema`."""
    if not isinstance(doc, dict):
        raise SchemaError(source, "$", "expected a mapping at the top level")
    missing = sorted(_TOP_KEYS - doc.keys())
    if missing:
        raise SchemaError(source, missing[0], "required key is missing")
    unknown = sorted(doc.keys() - _TOP_KEYS)
    if unknown:
        raise SchemaError(source, unknown[0], f"unknown key (valid: {', '.join(sorted(_TOP_KEYS))})")
    name = doc["table"]
    if not isinstance(name, str) or not name.isidentifier():
        raise SchemaError(source, "table", f"must be a plain identifier, got {name!r}")
    if not isinstance(doc["columns"], list) or not doc["columns"]:
        raise SchemaError(source, "columns", "must be a non-empty list")
    columns: list[Column] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["columns"]):
        key = f"columns[{i}]"
        if not isinstance(raw, dict):
            raise SchemaError(source, key, "expected a mapping with name, type, nullable, description")
        if sorted(raw.keys()) != sorted(_COLUMN_KEYS):
            wrong = sorted(set(raw.keys()) ^ _COLUMN_KEYS)
            raise SchemaError(source, f"{key}.{wrong[0]}", "missing or unknown column key")
        cname, ctype, nullable, desc = raw["name"], raw["type"], raw["nullable"], raw["description"]
        if not isinstance(cname, str) or not cname:
            raise SchemaError(source, f"{key}.name", "must be a non-empty string")
        if cname in seen:
            raise SchemaError(source, f"{key}.name", f"duplicate column {cname!r}")
        if ctype not in ARROW_TYPES:
            raise SchemaError(source, f"{key}.type", f"unknown type {ctype!r} (valid: {', '.join(ARROW_TYPES)})")
        if not isinstance(nullable, bool):
            raise SchemaError(source, f"{key}.nullable", "must be true or false")
        if not isinstance(desc, str) or not desc.strip():
            raise SchemaError(source, f"{key}.description", "must be a non-empty string")
        seen.add(cname)
        columns.append(Column(cname, ctype, nullable, desc.strip()))
    for list_key in ("partition_by", "sort_key"):
        value = doc[list_key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SchemaError(source, list_key, "must be a list of column names")
        for v in value:
            if v not in seen and not (list_key == "partition_by" and v in DERIVED_PARTITION_KEYS):
                raise SchemaError(source, list_key, f"{v!r} is not a column of {name}")
    for key in doc["partition_by"]:
        if key in seen:
            col = next(c for c in columns if c.name == key)
            if col.type != "string" or col.nullable:
                raise SchemaError(source, "partition_by", f"{key!r} must be a non-nullable string column")
    if "local_timestamp" not in seen:
        raise SchemaError(source, "columns", "every table needs a local_timestamp column")
    description = doc["description"]
    if not isinstance(description, str):
        raise SchemaError(source, "description", "must be a string")
    arrow = pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in columns])
    return TableSchema(
        name=name,
        description=" ".join(description.split()),
        partition_by=tuple(doc["partition_by"]),
        sort_key=tuple(doc["sort_key"]),
        columns=tuple(columns),
        arrow=arrow,
        source=source,
    )


def load_schemas(schemas_dir: Path | None = None) -> dict[str, TableSchema]:
    """Load every ``*.yaml`` of the schemas folder, keyed by table name (sorted)."""
    return dict(_load_cached(str((schemas_dir or default_schemas_dir()).resolve())))


@cache
def _load_cached(directory: str) -> tuple[tuple[str, TableSchema], ...]:
    folder = Path(directory)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise SchemaError(directory, "$", "no table schema (*.yaml) found")
    tables: dict[str, TableSchema] = {}
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SchemaError(str(path), "$", f"cannot read YAML: {exc}") from exc
        schema = parse_schema(doc, str(path))
        if schema.name != path.stem:
            raise SchemaError(str(path), "table", f"{schema.name!r} does not match the file name")
        tables[schema.name] = schema
    return tuple(sorted(tables.items()))
