"""Helpers shared by the spec tests: copies of the real specs with one file changed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from collector.specs import default_specs_dir

SPEC_FILES = sorted(default_specs_dir().glob("*.asyncapi.yaml"))


def copy_specs(tmp_path: Path, name: str, mutate: Callable[[dict[str, Any]], None]) -> Path:
    """Copy every spec into ``tmp_path``, the file ``name`` changed by ``mutate``; the folder."""
    for path in SPEC_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.name == name:
            mutate(doc)
        (tmp_path / path.name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return tmp_path
