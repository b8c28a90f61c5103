"""Benchmarks for saferails (``make bench`` / ``python -m bench``).

Benchmarks measure; they are not tests and assert nothing about timings. Each area is a module
``bench/<area>.py`` with ``run(args: BenchArgs) -> list[Result]``, listed in ``bench.__main__.AREAS``; shared
helpers (timing, databases, machine info, table and JSON output) live in :mod:`bench.common`.
"""
