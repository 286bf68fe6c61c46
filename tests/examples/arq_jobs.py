"""Two arq workers' start-ups in one process, six jobs between them, as arq runs them.

test_examples.py's test_arq_jobs_share_one_fleet_client runs this on the arq
environment's python (arq_worker.py imports arq; arq_env.py says why the test process
never does), with the sandbox's and the fleet's settings in its environment. It prints
the jobs' results as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import arq_worker

JOBS = 6


async def main() -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = [{}, {}]
    try:
        for ctx in workers:
            await arq_worker.startup(ctx)
        jobs = [arq_worker.verify(workers[n % 2], "telegram", "russia") for n in range(JOBS)]
        return list(await asyncio.gather(*jobs))
    finally:
        for ctx in workers:
            if "gsim" in ctx:
                await arq_worker.shutdown(ctx)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
