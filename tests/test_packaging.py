"""A built wheel is a complete install: specs, schemas and the C speedups travel with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_works_without_the_checkout(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("btse_collector-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for spec in (ROOT / "specs").glob("*.asyncapi.yaml"):
        assert f"collector/_data/specs/{spec.name}" in names
    for schema in (ROOT / "schemas").glob("*.yaml"):
        assert f"collector/_data/schemas/{schema.name}" in names
    assert any(n.startswith("collector/protocol/_speedups") and n.endswith(".so") for n in names)
    assert "collector/storage/views.sql" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import json, collector\n"
        "from collector.specs import load_registry\n"
        "from collector.specs.loader import default_specs_dir\n"
        "from collector.storage.schemas import default_schemas_dir, load_schemas\n"
        "from collector.protocol import native\n"
        "print(json.dumps({'package': collector.__file__, 'specs': str(default_specs_dir()),\n"
        "  'schemas': str(default_schemas_dir()), 'servers': len(load_registry().servers()),\n"
        "  'tables': sorted(load_schemas()), 'core': native.implementation()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTSE_COLLECTOR_")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout)
    assert seen["package"].startswith(str(site))
    assert seen["specs"] == str(site / "collector" / "_data" / "specs")
    assert seen["schemas"] == str(site / "collector" / "_data" / "schemas")
    assert seen["servers"] >= 3
    assert seen["tables"] == sorted(p.stem for p in (ROOT / "schemas").glob("*.yaml"))
    assert seen["core"] == "c"
