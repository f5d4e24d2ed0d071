"""The ``btse-collector`` command line: parses arguments and dispatches to a command module.

Exit codes: 0 ok, 1 runtime failure, 2 usage, 78 configuration error (see ``collector.errors``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from collector import __version__
from collector.errors import EXIT_FAILURE, EXIT_USAGE, FatalError

# command name -> module under collector.commands
COMMANDS: dict[str, str] = {
    "run": "run",
    "check-config": "check_config",
    "specs": "specs",
    "simulate": "simulate",
    "demo": "demo",
    "query": "query",
    "status": "status",
}

SUMMARIES: dict[str, str] = {
    "run": "run the collector with a config file (the daemon)",
    "check-config": "validate a config file and report every problem",
    "specs": "print the channel table of the AsyncAPI specs",
    "simulate": "serve a simulated BTSE exchange on loopback",
    "demo": "run the simulator and the collector for ~30 s and show what DuckDB sees",
    "query": "run SQL over the Parquet store with DuckDB",
    "status": "show a running collector's health as a table",
}


def _load(name: str) -> ModuleType | None:
    module_name = f"collector.commands.{COMMANDS[name]}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="btse-collector",
        description="Collect BTSE market data into a Parquet store that DuckDB reads.",
    )
    parser.add_argument("--version", action="version", version=f"btse-collector {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="minimum level of log events (default: info)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        help_text = getattr(module, "HELP", SUMMARIES[name]) if module else SUMMARIES[name]
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if module is not None:
            module.add_arguments(cmd)
        cmd.set_defaults(_module=module, _name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "_module", None) is not None:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from collector import logs

    logs.configure(level=args.log_level)
    module: ModuleType | None = args._module
    if module is None:
        print(
            f"btse-collector {args._name}: not built yet in this version "
            "(see the README for what works today)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    try:
        code: int = module.main(args)
    except FatalError as exc:
        print(f"btse-collector {args._name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `btse-collector specs | head`: the reader left; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return code
