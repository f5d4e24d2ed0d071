"""One module per ``btse-collector`` subcommand.

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int`` (the exit code). ``collector.cli`` imports them lazily so that
``btse-collector specs`` does not pay for pyarrow or aiohttp.
"""
