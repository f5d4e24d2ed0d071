"""Run every benchmark module and write results to bench/results/<name>.json."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _machine() -> dict[str, object]:
    import os

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="run only benchmarks whose name contains this")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if any(o in m for o in args.only)]
    if not modules:
        print("no benchmarks found", file=sys.stderr)
        return 1
    for name in modules:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {module.TITLE} ({name})", flush=True)
        started = time.time()
        result = module.run()
        result["machine"] = _machine()
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        result["wall_seconds"] = round(time.time() - started, 1)
        out = RESULTS / f"{name.removeprefix('bench_')}.json"
        out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        for line in result.get("summary", []):
            print(f"   {line}")
        print(f"   -> {out.relative_to(HERE.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
