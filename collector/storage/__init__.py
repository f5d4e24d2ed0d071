"""The Parquet store: table schemas, Hive layout, the crash-safe writer, recovery, DuckDB views.

Public API::

    from collector.storage import Store, recover, load_schemas, connect
"""

from collector.storage.recovery import RecoveryReport, recover
from collector.storage.schemas import TableSchema, load_schemas
from collector.storage.writer import FlushResult, Store, newest_trades

__all__ = [
    "FlushResult",
    "RecoveryReport",
    "Store",
    "TableSchema",
    "load_schemas",
    "newest_trades",
    "recover",
]
