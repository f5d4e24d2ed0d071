"""``btse-collector specs``: the channel table of the AsyncAPI specs in ``specs/``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from collector.errors import EXIT_OK, EXIT_USAGE, SpecLookupError

HELP = "print the channel table of the AsyncAPI specs (product, server, topic, auth, deprecated)"

COLUMNS = ("product", "kind", "servers", "topic", "auth", "deprecated")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--product",
        action="append",
        metavar="P",
        help="only this product (spot, futures, otc); repeat for several",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument(
        "--environment",
        choices=("production", "testnet"),
        default="production",
        help="which servers to name (default: production)",
    )
    parser.add_argument(
        "--specs-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of *.asyncapi.yaml files (default: $BTSE_COLLECTOR_SPECS or the repo's specs/)",
    )
    parser.add_argument(
        "--no-deprecated", action="store_true", help="leave out deprecated channels"
    )


def rows(
    registry: Any, products: list[str] | None, environment: str, include_deprecated: bool = True
) -> list[dict[str, Any]]:
    """One row per topic channel, current channels first within a product."""
    out: list[dict[str, Any]] = []
    for product in products or list(registry.products):
        channels = registry.channels(product, include_deprecated=include_deprecated)
        for ch in sorted(channels, key=lambda c: (c.deprecated, c.kind, c.template)):
            servers = [
                name for name in ch.servers if registry.server(name).environment == environment
            ]
            out.append(
                {
                    "product": ch.product,
                    "kind": ch.kind,
                    "servers": servers,
                    "topic": ch.template,
                    "variants": [v.template for v in ch.variants],
                    "auth": ch.auth_required,
                    "deprecated": ch.deprecated,
                    "deprecation": ch.deprecation,
                    "urls": [registry.server(name).url for name in servers],
                }
            )
    return out


def render_table(table: list[dict[str, Any]]) -> str:
    cells = [list(COLUMNS)]
    for row in table:
        topic = row["topic"]
        if row["variants"]:
            topic += " (also " + ", ".join(row["variants"]) + ")"
        cells.append(
            [
                row["product"],
                row["kind"],
                ",".join(row["servers"]),
                topic,
                "yes" if row["auth"] else "no",
                "yes" if row["deprecated"] else "",
            ]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from collector.specs import load_registry

    registry = load_registry(args.specs_dir)
    for product in args.product or ():
        if product not in registry.products:
            print(
                f"btse-collector specs: {SpecLookupError('product', product, registry.products)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    table = rows(registry, args.product, args.environment, not args.no_deprecated)
    if args.format == "json":
        json.dump(table, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render_table(table))
    return EXIT_OK
