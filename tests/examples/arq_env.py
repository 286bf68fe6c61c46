"""An environment of arq's own, made the way an arq user's deployment is.

arq (every release, 0.26 to 0.28) pins redis-py below 6; the test environment has
redis-py 8 (the fleet's Cluster tests need its pub/sub on asyncio Cluster clients). So
the test process never imports arq. A session fixture makes a venv, installs arq into it
first with the venv's own pip (redis-py 5 comes with it), and only then makes the test
environment's packages visible behind its own: a ``.pth`` file adds each of this
interpreter's site-packages directories after the venv's (``site.addsitedir`` also runs
their ``.pth`` files, so an editable install of gsim_async is found). gsim_async is then
imported from where the tests import it, beside arq and redis-py 5.

The worker runs on that venv's python (``python -m arq arq_worker.WorkerSettings``), and
so does what a caller does with arq (``arq_client.py``: queue jobs, read their results
and statuses) and any script that imports the example (``arq_jobs.py``).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import gsim_async

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
#: What the arq environment installs: the example's own requirement (its docstring).
REQUIREMENT = "arq>=0.26"
#: The redis-py major version arq's pin gives (``redis<6``): what its users have.
REDIS_MAJOR = "5"
#: Seconds pip may take (a cold cache on a slow index); its output is shown past them.
INSTALL_TIMEOUT = 600.0

#: Run by the venv's python once the .pth is in place: where everything comes from.
WHERE_FROM = """
import json, sys
import arq, redis, gsim_async
from importlib.metadata import version
print(json.dumps({
    "arq": version("arq"),
    "redis": redis.__version__,
    "redis_file": redis.__file__,
    "gsim_async_file": gsim_async.__file__,
    "sys_path": sys.path,
}))
"""


class ArqEnvError(Exception):
    """The arq environment could not be made; the message holds what the tools printed."""


@dataclass(frozen=True)
class ArqEnv:
    """A venv with arq and redis-py 5 first, the test environment's packages behind them."""

    root: Path
    python: Path

    #: Before the inherited ``PYTHONPATH`` in its processes: the examples alone. Never
    #: where gsim_async is imported from here: an installed wheel's site-packages on
    #: ``PYTHONPATH`` would come before the venv's own and shadow its redis-py.
    pythonpath: tuple[Path, ...] = (EXAMPLES,)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a process run by this venv's python."""
        inherited = os.environ.get("PYTHONPATH")
        path = [*map(str, self.pythonpath), *filter(None, [inherited])]
        return {
            **os.environ,
            **(extra or {}),
            "PYTHONPATH": os.pathsep.join(path),
            "PYTHONUNBUFFERED": "1",
        }

    def run(
        self, script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> Any:
        """Run ``tests/examples/<script>`` on this venv's python: the JSON it printed last."""
        argv = [str(self.python), str(HERE / script), *args]
        try:
            done = subprocess.run(  # noqa: S603 (our own scripts, the venv's own python)
                argv,
                cwd=EXAMPLES,
                env=self.environ(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{script} {' '.join(args)} did not finish within {timeout} s:\n"
                + _text(exc.stdout)
                + _text(exc.stderr)
            ) from None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise AssertionError(
                f"{script} {' '.join(args)} exited with {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return json.loads(lines[-1])


class ArqQueue:
    """What a caller does with arq, done by ``arq_client.py`` in the arq environment."""

    def __init__(self, env: ArqEnv, redis_url: str) -> None:
        self.env = env
        self.redis_url = redis_url

    def _client(self, *args: str, timeout: float = 60.0) -> Any:
        return self.env.run("arq_client.py", self.redis_url, *args, timeout=timeout)

    def enqueue(self, function: str, *args: str, count: int = 1) -> list[str]:
        """``enqueue_job(function, *args)``, ``count`` times: the jobs' ids."""
        ids: list[str] = self._client("enqueue", "--count", str(count), function, *args)
        return ids

    def results(self, job_ids: Sequence[str], timeout: float) -> dict[str, Any]:
        """``Job.result(timeout=...)`` of each job (awaited together), by id."""
        answers: dict[str, dict[str, Any]] = self._client(
            "results", "--timeout", str(timeout), *job_ids, timeout=timeout + 30
        )
        failed = {job: answer["error"] for job, answer in answers.items() if "error" in answer}
        assert not failed, f"jobs without a result: {failed}"
        return {job: answer["result"] for job, answer in answers.items()}

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """``Job.status()`` of each job, by id (a ``JobStatus`` value: ``"queued"``...)."""
        statuses: dict[str, str] = self._client("statuses", *job_ids)
        return statuses


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _step(argv: Sequence[str], what: str, env: dict[str, str], timeout: float) -> str:
    """Run one step of the build; its whole output in the error when it fails."""
    try:
        done = subprocess.run(  # noqa: S603 (this interpreter, the venv's own python and pip)
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ArqEnvError(
            f"{what}: no result within {timeout} s ({' '.join(argv)}):\n{_text(exc.stdout)}"
        ) from None
    except OSError as exc:
        raise ArqEnvError(f"{what}: {' '.join(argv)} could not run: {exc}") from None
    if done.returncode != 0:
        raise ArqEnvError(
            f"{what} failed (exit status {done.returncode}; {' '.join(argv)}):\n{done.stdout}"
        )
    return done.stdout


def parent_site_directories() -> list[str]:
    """This interpreter's site-packages directories, in the order it reads them."""
    directories = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return [d for d in directories if os.path.isdir(d)]


def build(root: Path) -> ArqEnv:
    """Make the arq environment in ``root`` (a new directory) and check it."""
    # pip must see the venv's packages alone: what an inherited PYTHONPATH holds is not
    # installed there, and the test environment's redis-py would stand in for arq's.
    quiet = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    quiet["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # venv makes the new one from the base interpreter, also when this one is a venv.
    _step([sys.executable, "-m", "venv", str(root)], "python -m venv", quiet, 120)
    python = root / ("Scripts" if os.name == "nt" else "bin") / "python"
    _step(
        [str(python), "-m", "pip", "install", "--no-input", REQUIREMENT],
        f"pip install {REQUIREMENT} (the venv's own pip)",
        quiet,
        INSTALL_TIMEOUT,
    )
    # Only now the test environment's packages, behind the venv's own.
    purelib = _step(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        "finding the venv's site-packages",
        quiet,
        60,
    ).strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_directories()]
    (Path(purelib) / "_gsim_test_environment.pth").write_text("\n".join(lines) + "\n")

    env = ArqEnv(root, python)
    where = _step([str(python), "-c", WHERE_FROM], "importing arq there", env.environ(), 60)
    found = json.loads(where)
    mine = Path(gsim_async.__file__).resolve()
    problems = []
    if not Path(found["redis_file"]).resolve().is_relative_to(root.resolve()):
        problems.append(
            f"redis-py {found['redis']} imported from {found['redis_file']}, not the venv's own"
        )
    elif not found["redis"].startswith(f"{REDIS_MAJOR}."):
        problems.append(
            f"redis-py {found['redis']}, not {REDIS_MAJOR}.x: arq {found['arq']} no longer "
            "pins what this environment exists for (see pyproject.toml's test extra)"
        )
    if Path(found["gsim_async_file"]).resolve() != mine:
        problems.append(f"gsim_async imported from {found['gsim_async_file']}, not {mine}")
    if problems:
        raise ArqEnvError(
            "the arq environment is not what its tests need:\n  "
            + "\n  ".join(problems)
            + "\nsys.path there:\n  "
            + "\n  ".join(found["sys_path"])
        )
    return env


@pytest.fixture(scope="session")
def arq_env(tmp_path_factory: pytest.TempPathFactory) -> ArqEnv:
    """The arq environment, made once per session (seconds, from pip's cache)."""
    try:
        return build(tmp_path_factory.mktemp("arq-env") / "venv")
    except ArqEnvError as exc:
        failure = str(exc)
    # A failure, never a skip: the arq recipe's tests must run wherever the suite does.
    pytest.fail(f"the arq environment could not be made: {failure}", pytrace=False)
