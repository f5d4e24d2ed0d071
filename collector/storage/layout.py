"""Where things live in the store: Hive partition folders, file names, safe names.

::

    <data_dir>/<table>/product=<p>/symbol=<s>/date=YYYY-MM-DD/<table>-<start>-<id>.parquet   start = first row, µs
                                                             .<table>-<start>-<id>.journal      (open file)
                                                             .<table>-<start>-<id>.parquet.tmp  (being published)
    <data_dir>/<table>/product=_/symbol=_/date=1970-01-01/_schema.parquet   zero-row schema anchor
    <data_dir>/_quarantine/...<name>.quarantined
    <data_dir>/.btse-collector.lock

Only published files end in ``.parquet`` (plus the zero-row anchors); journals and temp files
end in ``.journal`` / ``.tmp`` so that no ``*.parquet`` glob — DuckDB's ``**/*.parquet``
included, which also matches hidden dot-files — ever matches a file that is being written.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collector.errors import UnsafePathError
from collector.storage.schemas import TableSchema

PARQUET_SUFFIX = ".parquet"
JOURNAL_SUFFIX = ".journal"
TMP_SUFFIX = ".parquet.tmp"
QUARANTINE_SUFFIX = ".quarantined"
QUARANTINE_DIR = "_quarantine"
LOCK_NAME = ".btse-collector.lock"
ANCHOR_NAME = "_schema.parquet"
ANCHOR_VALUE = "_"
ANCHOR_DATE = "1970-01-01"

_US_PER_DAY = 86_400_000_000
# A partition value: ASCII letters, digits, '-', '_', '.', starting with a letter or digit.
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STEM = re.compile(r"(?P<table>[a-z_]+)-(?P<start>\d{8}T\d{6}\.\d{6}Z)-(?P<id>[0-9a-f]{8,32})")


def safe_name(value: object, what: str = "name") -> str:
    """Return ``value`` if it is a plain, safe folder name; else raise :class:`UnsafePathError`.

    Refused: non-strings, empty, ``.``/``..``, anything with ``/``, ``\\``, NUL or other
    control characters, a leading dot or dash, absolute paths, non-ASCII (look-alike)
    characters, ``=`` (Hive separator) and names over 64 characters.
    """
    if not isinstance(value, str):
        raise UnsafePathError(repr(value), f"{what} must be a string, got {type(value).__name__}")
    if _SAFE.fullmatch(value) is None or ".." in value:
        shown = unicodedata.normalize("NFC", value).encode("unicode_escape").decode("ascii")
        raise UnsafePathError(
            shown[:80],
            f"unsafe {what} {shown[:80]!r}: only ASCII letters, digits, '.', '_' and '-' "
            "(not leading, no '..', at most 64 characters) are allowed",
        )
    return value


def date_of(local_timestamp_us: int) -> str:
    """UTC date ``YYYY-MM-DD`` of a microsecond timestamp."""
    return datetime.fromtimestamp(local_timestamp_us // _US_PER_DAY * 86_400, tz=UTC).strftime(
        "%Y-%m-%d"
    )


def day_number(local_timestamp_us: int) -> int:
    return local_timestamp_us // _US_PER_DAY


def day_to_date(day: int) -> str:
    return date_of(day * _US_PER_DAY)


@dataclass(frozen=True)
class Partition:
    """A Hive partition of one table: ``values`` in the order of ``schema.partition_by``."""

    table: str
    keys: tuple[str, ...]
    values: tuple[str, ...]

    def relpath(self) -> Path:
        return Path(self.table, *(f"{k}={v}" for k, v in zip(self.keys, self.values, strict=True)))

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.keys, self.values, strict=True))


def make_partition(schema: TableSchema, route: tuple[str, ...], date: str) -> Partition:
    """Partition of ``schema`` from the route values (non-date keys, validated) and the date."""
    values: list[str] = []
    it = iter(route)
    for key in schema.partition_by:
        values.append(date if key == "date" else safe_name(next(it), key))
    return Partition(safe_name(schema.name, "table"), schema.partition_by, tuple(values))


def anchor_path(data_dir: Path, schema: TableSchema) -> Path:
    parts = [f"{k}={ANCHOR_DATE if k == 'date' else ANCHOR_VALUE}" for k in schema.partition_by]
    return data_dir / schema.name / Path(*parts) / ANCHOR_NAME


def new_stem(table: str, start_us: int) -> str:
    """File stem ``<table>-<YYYYmmddTHHMMSS.ffffffZ>-<random hex>``: sorts by the first row's time."""
    start = datetime.fromtimestamp(start_us // 1_000_000, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{table}-{start}.{start_us % 1_000_000:06d}Z-{uuid.uuid4().hex[:12]}"


def stem_start(stem: str) -> str:
    """The start-time part of a stem (files of one partition sort by it)."""
    match = _STEM.fullmatch(stem)
    return match.group("start") if match else ""


def is_stem(stem: str) -> bool:
    return _STEM.fullmatch(stem) is not None


def journal_path(directory: Path, stem: str) -> Path:
    return directory / f".{stem}{JOURNAL_SUFFIX}"


def tmp_path(directory: Path, stem: str) -> Path:
    return directory / f".{stem}{TMP_SUFFIX}"


def final_path(directory: Path, stem: str) -> Path:
    return directory / f"{stem}{PARQUET_SUFFIX}"


def stem_of(path: Path) -> str | None:
    """The stem of a journal, temp or published file of ours, or None."""
    name = path.name
    for suffix, hidden in ((JOURNAL_SUFFIX, True), (TMP_SUFFIX, True), (PARQUET_SUFFIX, False)):
        if name.endswith(suffix):
            core = name[: -len(suffix)]
            if hidden:
                if not core.startswith("."):
                    return None
                core = core[1:]
            return core if is_stem(core) else None
    return None


def quarantine_path(data_dir: Path, path: Path) -> Path:
    """Where a broken leftover goes: same relative path under ``_quarantine``, never ``*.parquet``."""
    rel = path.resolve().relative_to(data_dir.resolve())
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir / QUARANTINE_DIR / rel.parent / f"{rel.name}.{stamp}{QUARANTINE_SUFFIX}"
