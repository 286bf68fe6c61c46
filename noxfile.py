"""Developer and CI sessions.

``nox`` runs ``tests`` on every supported Python against the built wheel (not this
source tree, so a packaging mistake fails), ``lint``, ``typecheck`` and ``docs``;
``nox -s bench`` runs the benchmarks. ``.ci/run`` runs the same sessions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DIST = ROOT / "dist"
#: What the test suite needs beside itself: the examples and benchmarks it runs, the
#: pytest configuration, and the documentation's sources (tests/test_docs_site.py builds
#: the site, its reference read from the wheel). The package itself is left out, so only
#: the wheel can be imported.
TEST_TREE = [
    "tests",
    "examples",
    "benchmarks",
    "pyproject.toml",
    "docs",
    "mkdocs.yml",
    "scripts",
    "README.md",
    "CHANGELOG.md",
]
#: Run where the tests run: the import must come from the installed wheel.
WHERE_FROM = """
import sys, gsim_async
print("gsim_async imported from", gsim_async.__file__)
sys.exit(0 if "site-packages" in gsim_async.__file__ else "not the installed wheel")
"""


def wheel(session: nox.Session) -> Path:
    """The wheel in dist/, built (once) if there is none."""
    wheels = sorted(DIST.glob("gsim_async-*.whl"))
    if not wheels:
        session.install("build")
        session.run("python", "-m", "build", "--wheel", "--outdir", str(DIST), str(ROOT))
        wheels = sorted(DIST.glob("gsim_async-*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {DIST}, found {[w.name for w in wheels]}")
    return wheels[0]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite against the installed wheel (``rm -r dist`` to rebuild it)."""
    session.install(f"{wheel(session)}[test]")
    stage = Path(session.create_tmp()) / "suite"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    for name in TEST_TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, stage / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, stage / name)
    session.chdir(stage)
    session.run("python", "-c", WHERE_FROM)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the user-facing typing tests.

    The fleet is typed against redis-py 6+'s annotations (5.x types every async command
    as ``Awaitable[T] | T``); the test extra resolves redis-py 5.x, as arq pins it below
    6, so the newest redis-py is installed over it here (arq is not type-checked).
    """
    session.install("-e", ".[test]")
    session.install("redis>=6")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the CLI screenshots, then build the site with --strict.

    The site lands in .nox/docs/tmp/site; ``mkdocs serve`` shows it while you edit.
    """
    session.install("-e", ".[docs]")
    session.run("python", "scripts/cli_screenshots.py")
    site = Path(session.create_tmp()) / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmark suite (tables on stdout; ``-- --json out.json`` to save)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
