"""Type stub of the C speedups (collector/protocol/_speedups.c)."""

from collections.abc import Sequence
from typing import Any

Level = tuple[float, float] | list[float]

RUN_LIMIT: int

class BookCore:
    # copies: reading builds a new dict from the C hash table, assigning replaces the side
    bids: dict[float, float]
    asks: dict[float, float]
    _top: tuple[float | None, float | None, float | None, float | None]
    timestamp_us: int | None
    expected_seq: int | None
    received_seq: int | None
    key: tuple[str, str, int]
    _best_bid: float
    _best_ask: float
    last_seq: int
    skipped_count: int
    skipped_since_sync: int
    duplicate_count: int
    gap_count: int
    crossed_count: int
    _state: int
    def apply_delta(
        self,
        bids: Sequence[Level],
        asks: Sequence[Level],
        seq: int,
        prev_seq: int,
        timestamp_us: int | None = None,
        /,
    ) -> int: ...
    def top_changed(self) -> bool: ...
    def side_sizes(self) -> tuple[int, int]: ...

class BookChanges:
    def __len__(self) -> int: ...
    def append(
        self,
        key: tuple[str, str, int],
        timestamp: int | None,
        local_ts: int,
        is_snapshot: bool,
        seq: int,
        prev_seq: int,
        bids: Sequence[Level],
        asks: Sequence[Level],
        /,
    ) -> None: ...
    def take(self) -> tuple[Any, ...]: ...

def apply_delta_rows(
    book: BookCore,
    bids: Sequence[Level],
    asks: Sequence[Level],
    seq: int,
    prev_seq: int,
    timestamp_us: int,
    local_ts: int,
    book_changes: BookChanges,
    quotes: list[tuple[Any, ...]],
    /,
) -> int: ...
def columns_of(rows: list[tuple[Any, ...]], width: int, /) -> list[list[Any]]: ...
def has_long_digit_run(raw: bytes | bytearray | memoryview, /) -> bool: ...
