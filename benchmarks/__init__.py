"""Benchmarks of gsim-async against the targets of design.md; ``python -m benchmarks``.

Modules: ``suite`` (the command line and the summary), ``verification`` (waiting at
scale and under a rate limit, SDK versus the naive loop), ``slow_get`` (p99 while one
order's GET takes 10 s), ``limits`` (1,000 activations under a 20 req/s limit, unknown,
told or advertised, and steady demand under it), ``overhead`` (client CPU per request
versus raw aiohttp), ``memory`` (RSS per waiting order), ``chaos`` (no money or code
lost under faults), ``sandbox_throughput`` (the sandbox's request rate), ``journal`` (the
crash journal's cost: CPU per code, requests, purchases per second), and ``_common`` (the
sandbox subprocess, child processes, tables). Run on their own: ``fleet`` (8 processes on
one key through Redis) and ``soak`` (a fleet for 10 minutes while members are killed and
stalled, and Redis restarts empty and fails over).
"""
