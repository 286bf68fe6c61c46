"""What a caller does with arq, for the tests: run by the arq environment's python.

The test process never imports arq (arq_env.py says why); it runs this script, which
prints one JSON line::

    python arq_client.py REDIS_URL enqueue [--count N] FUNCTION [ARG...]   # job ids
    python arq_client.py REDIS_URL results --timeout S JOB_ID...          # by id
    python arq_client.py REDIS_URL statuses JOB_ID...                     # by id

A job's result is ``{"result": ...}``, or ``{"error": "..."}`` when ``Job.result``
raised (the job failed, or no result within the timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.jobs import Job


async def enqueue(pool: ArqRedis, function: str, args: list[str], count: int) -> list[str]:
    ids = []
    for _ in range(count):
        job = await pool.enqueue_job(function, *args)
        if job is None:  # only when a job id is reused, which a random one never is
            raise RuntimeError(f"arq did not enqueue {function}")
        ids.append(job.job_id)
    return ids


async def result(job: Job, timeout: float) -> dict[str, Any]:
    try:
        return {"result": await job.result(timeout=timeout)}
    except Exception as exc:  # reported to the test, which shows it
        return {"error": f"{type(exc).__name__}: {exc}"}


async def main(arguments: argparse.Namespace) -> Any:
    pool = await create_pool(RedisSettings.from_dsn(arguments.redis_url))
    try:
        if arguments.command == "enqueue":
            return await enqueue(pool, arguments.function, arguments.args, arguments.count)
        jobs = {job_id: Job(job_id, pool) for job_id in arguments.job_ids}
        if arguments.command == "results":
            answers = await asyncio.gather(*(result(j, arguments.timeout) for j in jobs.values()))
            return dict(zip(jobs, answers, strict=True))
        return {job_id: (await job.status()).value for job_id, job in jobs.items()}
    finally:
        await pool.aclose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("redis_url")
    commands = parser.add_subparsers(dest="command", required=True)
    queue = commands.add_parser("enqueue")
    queue.add_argument("--count", type=int, default=1)
    queue.add_argument("function")
    queue.add_argument("args", nargs="*")
    results = commands.add_parser("results")
    results.add_argument("--timeout", type=float, required=True)
    results.add_argument("job_ids", nargs="+")
    statuses = commands.add_parser("statuses")
    statuses.add_argument("job_ids", nargs="+")
    return parser.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse()))))
