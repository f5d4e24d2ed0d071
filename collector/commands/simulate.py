"""``btse-collector simulate``: serve the simulated BTSE exchange until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from collector.errors import EXIT_OK, EXIT_USAGE
from collector.simulator.faults import Fault, FaultSpecError, parse_fault

HELP = "serve a simulated BTSE exchange (spot, futures, OTC) on loopback, with fault injection"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    parser.add_argument("--seed", type=int, default=1, help="market seed (same seed, same market)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="market events per second per symbol (default 10)")
    parser.add_argument(
        "--symbols", nargs="+", metavar="PRODUCT:SYMBOL",
        help="markets to simulate, e.g. spot:BTC-USD futures:BTC-PERP otc:BTC-USD "
             "(default: spot BTC-USD ETH-USD, futures BTC-PERP ETH-PERP, otc BTC-USD)",
    )
    parser.add_argument("--fault", action="append", default=[], metavar="KIND@SECONDS[:k=v,...]",
                        help="schedule a fault, e.g. gap@5, stall@10:seconds=3,product=spot "
                             "(repeatable)")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="drop sockets idle this long, like BTSE (default 60 s)")
    parser.add_argument("--api-key", action="append", default=[], metavar="KEY:SECRET",
                        help="accept authKeyExpires with this key pair (repeatable)")
    parser.add_argument("--truth-dump", type=Path, metavar="PATH",
                        help="write the ground truth (books, trades, faults) as JSON on exit")


def _symbols(items: list[str] | None) -> dict[str, list[str]] | None:
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        product, sep, symbol = item.partition(":")
        if not sep or not symbol:
            raise ValueError(f"--symbols entry {item!r} is not PRODUCT:SYMBOL")
        out.setdefault(product, []).append(symbol)
    return out


def main(args: argparse.Namespace) -> int:
    try:
        symbols = _symbols(args.symbols)
        faults = [parse_fault(text) for text in args.fault]
        keys = dict(k.split(":", 1) for k in args.api_key if ":" in k)
        if len(keys) != len(args.api_key):
            raise ValueError("--api-key must be KEY:SECRET")
    except (ValueError, FaultSpecError) as exc:
        print(f"btse-collector simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(args, symbols, faults, keys))
    except ValueError as exc:
        print(f"btse-collector simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _serve(args: argparse.Namespace, symbols: dict[str, list[str]] | None,
                 faults: list[Fault], keys: dict[str, str]) -> int:
    from collector.simulator import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    sim = Simulator(seed=args.seed, symbols=symbols, rate=args.rate, host=args.host,
                    port=args.port, faults=faults, idle_timeout=args.idle_timeout, api_keys=keys)
    async with sim:
        for name, url in sorted(sim.urls.items()):
            print(f"{name:12} {url}", flush=True)
        print("serving; Ctrl-C to stop", flush=True)
        await stop.wait()
    if args.truth_dump:
        path = sim.truth.dump_json(args.truth_dump)
        print(f"ground truth written to {path}", flush=True)
    return EXIT_OK
