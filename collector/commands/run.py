"""``btse-collector run --config FILE``: the collector daemon.

Performs the ``check-config`` checks first (a bad config exits 78 before anything touches the
network or the disk), then runs :class:`collector.service.daemon.Daemon` on uvloop when it is
installed, until SIGTERM/SIGINT; exits 0 after a clean drain-and-flush, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import structlog

from collector import logs
from collector.config import data_dir_problem, load_config
from collector.errors import EXIT_CONFIG, ConfigError, ConfigProblem

HELP = "run the collector with a config file (the daemon; stops cleanly on SIGTERM/SIGINT)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="the YAML config (see deploy/collector.yaml)",
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="override the config's data_dir"
    )
    parser.add_argument(
        "--no-http", action="store_true", help="do not start the /healthz and /metrics server"
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster receive path, see the README), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def main(args: argparse.Namespace) -> int:
    import dataclasses

    from collector.service.daemon import Daemon

    config = load_config(args.config)
    if args.data_dir is not None:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    why = data_dir_problem(config.data_dir)
    if why:
        raise ConfigError([ConfigProblem(str(args.config), None, "data_dir", why)])
    cli_level = getattr(args, "log_level", "info")
    logs.configure(
        level=config.logging.level if cli_level == "info" else cli_level, fmt=config.logging.format
    )
    daemon = Daemon(config, http=not args.no_http)
    loop = new_event_loop()
    try:
        code = loop.run_until_complete(daemon.serve())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    structlog.get_logger().info("collector_exit", code=code)
    if code == EXIT_CONFIG:
        print(
            "btse-collector run: stopped by a configuration problem (see the log)", file=sys.stderr
        )
    return code
