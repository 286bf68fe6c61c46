"""Benchmarks of gsim-async against the targets of design.md; ``python -m benchmarks``.

Modules: ``suite`` (the command line and the summary), ``verification`` (waiting at
scale and under a rate limit, SDK versus the naive loop), ``overhead`` (client CPU
per request versus raw aiohttp), ``memory`` (RSS per waiting order), ``chaos`` (no
money or code lost under faults), ``sandbox_throughput`` (the sandbox's request
rate), and ``_common`` (the sandbox subprocess, child processes, tables).
"""
