from __future__ import annotations

import pytest
from storage_helpers import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
