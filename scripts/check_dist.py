"""Check the built sdist and wheel carry what a user needs: ``python scripts/check_dist.py dist/*``.

Fails (exit 1, one line per problem) unless both carry the MIT LICENSE, the wheel's
metadata names it, and the wheel has ``py.typed`` and the ``gsim`` / pytest plugin
entry points. CI runs it on the distributions it builds.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

LICENSE_LINE = "MIT License"


def check_sdist(path: Path) -> list[str]:
    problems = []
    with tarfile.open(path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        if "LICENSE" not in names:
            problems.append(f"{path.name}: no LICENSE")
        else:
            member = sdist.extractfile(f"{sdist.getnames()[0].split('/')[0]}/LICENSE")
            if member is None or LICENSE_LINE not in member.read().decode():
                problems.append(f"{path.name}: LICENSE is not the MIT license")
    return problems


def check_wheel(path: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        if not licenses:
            problems.append(f"{path.name}: no .dist-info/licenses/LICENSE")
        elif LICENSE_LINE not in wheel.read(licenses[0]).decode():
            problems.append(f"{path.name}: LICENSE is not the MIT license")
        metadata = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        problems += [
            f"{path.name}: METADATA lacks {line!r}"
            for line in ("License-Expression: MIT", "License-File: LICENSE")
            if line not in metadata.splitlines()
        ]
        if "gsim_async/py.typed" not in names:
            problems.append(f"{path.name}: no gsim_async/py.typed")
        entry_points = next(
            (wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")),
            "",
        )
        problems += [
            f"{path.name}: entry point {line!r} missing"
            for line in ("gsim = gsim_async.cli:main", "gsim_async = gsim_async.pytest_plugin")
            if line not in entry_points
        ]
    return problems


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths]
    sdists = [p for p in files if p.name.endswith(".tar.gz")]
    wheels = [p for p in files if p.suffix == ".whl"]
    problems = [] if sdists and wheels else ["give at least one sdist and one wheel"]
    for sdist in sdists:
        problems += check_sdist(sdist)
    for wheel in wheels:
        problems += check_wheel(wheel)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {', '.join(p.name for p in files)}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
