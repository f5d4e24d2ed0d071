"""Benchmarks (``make bench`` / ``python -m bench``).

Each ``bench/bench_*.py`` module defines ``TITLE: str`` and ``run() -> dict`` returning a
JSON-serializable result with a ``summary`` list of human-readable lines. Speed is always
reported as a ratio against a baseline measured in the same run, never asserted in tests.
"""
