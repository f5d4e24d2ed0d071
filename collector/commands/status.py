"""``btse-collector status [--url http://127.0.0.1:9108]``: a running collector's health as a table.

Fetches ``/healthz`` and renders it. Exit 0 when healthy, 1 when unhealthy or unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

from collector.errors import EXIT_FAILURE, EXIT_OK

HELP = "show a running collector's health as a table (exit 0 healthy, 1 otherwise)"
DEFAULT_URL = "http://127.0.0.1:9108"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the collector's health server (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw /healthz JSON")


def fetch(url: str, timeout: float) -> dict[str, Any]:
    """GET ``<url>/healthz``; a 503 still carries the JSON report."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url}: expected an http:// or https:// URL")
    target = url.rstrip("/")
    if not target.endswith("/healthz"):
        target += "/healthz"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        if exc.code != 503:
            raise OSError(f"{target}: HTTP {exc.code}") from None
    data = json.loads(body)
    if not isinstance(data, dict) or "healthy" not in data:
        raise ValueError(f"{target}: not a btse-collector /healthz answer")
    return data


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.0f}s" if float(seconds).is_integer() else f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


def render(data: dict[str, Any], url: str, out: TextIO) -> None:
    verdict = "HEALTHY" if data.get("healthy") else "UNHEALTHY"
    print(f"btse-collector at {url}: {verdict} - {data.get('status', '')}", file=out)
    lag = data.get("loop_lag_s")
    print(
        f"uptime {_age(data.get('uptime_s'))}, writer {'alive' if data.get('writer_alive') else 'STOPPED'}, "
        f"last flush {_age(data.get('last_flush_age_s'))} ago, open files {data.get('open_files', 0)}, "
        f"loop lag {_age(lag)}, watchdog {'fed' if data.get('watchdog_ok') else 'WITHHELD'}",
        file=out,
    )
    queues = data.get("queues") or {}
    if queues:
        parts = [
            f"{name} {q.get('depth')}" + (f"/{q['capacity']}" if q.get("capacity") else "")
            for name, q in queues.items()
        ]
        print("queues: " + ", ".join(parts), file=out)
    streams = data.get("streams") or []
    if streams:
        print(file=out)
        rows = [
            ["PRODUCT", "KIND", "SYMBOL", "STATE", "FRESH", "SILENT", "LIMIT", "MESSAGES", "TOPIC"]
        ]
        for s in streams:
            rows.append(
                [
                    str(s.get("product")),
                    str(s.get("kind")),
                    str(s.get("symbol")),
                    str(s.get("state")),
                    "yes" if s.get("fresh") else "STALE",
                    _age(s.get("age_s")),
                    _age(s.get("max_silence_s")),
                    str(s.get("messages", 0)),
                    str(s.get("topic") or ""),
                ]
            )
        table(rows, out)
    for title, key in (("problems", "reasons"), ("warnings", "warnings")):
        items = data.get(key) or []
        if items:
            print(f"\n{title}:", file=out)
            for item in items:
                print(f"  - {item}", file=out)


def status(
    url: str,
    timeout: float = 5.0,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        data = fetch(url, timeout)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"btse-collector at {url}: UNREACHABLE ({reason})", file=err)
        return EXIT_FAILURE
    if as_json:
        json.dump(data, out, indent=1)
        print(file=out)
    else:
        render(data, url, out)
    return EXIT_OK if data.get("healthy") else EXIT_FAILURE


def main(args: argparse.Namespace) -> int:
    return status(args.url, args.timeout, as_json=args.json)
