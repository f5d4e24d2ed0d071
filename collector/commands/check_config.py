"""``btse-collector check-config --config FILE``: validate a config and report every problem.

Prints a summary (markets, streams, planned connections per server) when the file is valid,
or every problem as ``file:line: key: message`` on stderr and exits 78 (EX_CONFIG), the code
``RestartPreventExitStatus=78`` in the systemd unit refers to. ``run`` performs the same checks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from collector.config import Config, data_dir_problem, load_config, resolve_credentials
from collector.errors import EXIT_CONFIG, EXIT_OK, ConfigError, CredentialsError, SpecError

HELP = "validate a config file and report every problem (exit 78 if any)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the YAML config"
    )
    parser.add_argument(
        "--skip-data-dir",
        action="store_true",
        help="do not check that data_dir is writable (e.g. checking a config for another machine)",
    )


def plan_connections(config: Config, registry: Any) -> list[tuple[str, str, int, str]]:
    """(server, url, connections, what) per server: the plan ``run`` starts with.

    Uses the daemon's own code: topics and OTC quote keys from ``feed.topics.subscriptions``,
    URLs from ``feed.topics.server_urls`` and connections from ``feed.planner.plan``.
    """
    from collector.feed.planner import plan, topics_of
    from collector.feed.topics import server_urls, subscriptions

    subs = subscriptions(config, registry)
    by_server = subs.by_server()
    urls = server_urls(config, registry)
    result = plan(by_server, config.connection.max_topics_per_connection)
    rows = []
    for server_name in sorted(by_server):
        conns = result.for_server(server_name)
        keys = topics_of(conns)
        quotes = sum(1 for k in keys if k in subs.otc_requests)
        if quotes:
            what = f"{quotes} quote{'s' if quotes != 1 else ''}, authenticated"
        else:
            what = f"{len(keys)} topics"
        rows.append((server_name, urls[server_name], len(conns), what))
    return rows


def summary(config: Config, registry: Any | None, out: TextIO) -> None:
    streams = config.streams()
    kinds = Counter(s.kind for s in streams)
    print(f"OK: {config.source}", file=out)
    print(f"  environment   {config.environment}", file=out)
    print(f"  data_dir      {config.data_dir.resolve()}", file=out)
    for i, m in enumerate(config.markets):
        label = "markets" if i == 0 else ""
        groupings = (
            f" (groupings {', '.join(map(str, m.groupings))})" if "book" in m.channels else ""
        )
        print(
            f"  {label:<13} {m.product}: {', '.join(m.symbols)} × {', '.join(m.channels)}{groupings}",
            file=out,
        )
    if config.otc is not None and config.otc.quotes:
        quotes = ", ".join(f"{q.symbol} {q.quantity:g} {q.currency}" for q in config.otc.quotes)
        print(f"  otc quotes    {quotes}", file=out)
    detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    print(f"  streams       {len(streams)} ({detail})", file=out)
    if registry is not None:
        rows = plan_connections(config, registry)
        total = sum(r[2] for r in rows)
        print(
            f"  connections   {total} planned "
            f"(max {config.connection.max_topics_per_connection} topics each)",
            file=out,
        )
        for server, url, n, what in rows:
            print(f"    {server:<20} {n} × {url}  ({what})", file=out)
    listen = config.health.listen
    where = f"http://{listen[0]}:{listen[1]}/healthz and /metrics" if listen else "disabled"
    print(f"  health        {where}", file=out)
    print(
        f"  storage       flush every {config.storage.flush_interval_s:g}s, rotate every "
        f"{config.storage.rotate_interval_s:g}s or {config.storage.rotate_max_bytes // 2**20} MiB, "
        f"raw frames {'on' if config.storage.raw else 'off'}",
        file=out,
    )


def check(
    path: Path, *, skip_data_dir: bool = False, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        config = load_config(path)
    except ConfigError as exc:
        n = len(exc.problems)
        print(f"{path}: {n} problem{'s' if n != 1 else ''}:", file=err)
        for problem in exc.problems:
            print(f"  {problem}", file=err)
        return EXIT_CONFIG
    problems: list[str] = []
    if not skip_data_dir:
        why = data_dir_problem(config.data_dir)
        if why:
            problems.append(f"{path}: data_dir: {why}")
    if config.needs_credentials and config.otc is not None:
        try:
            resolve_credentials(config.otc.credentials)
        except CredentialsError as exc:
            problems.append(f"{path}: otc.credentials: {exc}")
    if problems:
        print(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:", file=err)
        for line in problems:
            print(f"  {line}", file=err)
        return EXIT_CONFIG
    registry = None
    try:
        specs = importlib.import_module("collector.specs")
        registry = specs.load_registry(config.specs_dir)
    except (ModuleNotFoundError, SpecError) as exc:  # load_config already checked the specs
        print(f"  (connection plan unavailable: {exc})", file=err)
    summary(config, registry, out)
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    return check(args.config, skip_data_dir=args.skip_data_dir)
