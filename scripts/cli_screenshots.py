"""Terminal screenshots of the ``gsim`` command for the docs: ``python scripts/cli_screenshots.py``.

Runs real ``gsim`` commands in-process (click's runner) against a sandbox embedded in
this process, replays what each printed, colours included, into a recording rich
``Console``, and saves one SVG per scene under ``docs/assets/cli/``. Nothing is drawn
by hand: change the command line and the screenshots follow. ``nox -s docs`` and CI run
this before ``mkdocs build --strict``, whose pages link to the files it writes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import json
import shlex
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from rich.console import Console
from rich.text import Text

import gsim_async.cli._context
from gsim_async.cli import cli
from gsim_async.sandbox import Sandbox

OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "cli"
WIDTH = 110
#: Codes arrive within a second here, and the poll is quick: the output is the same.
CODE_DELAY = (0.3, 0.8)
POLL = "0.1"


@contextmanager
def served(**options: object) -> Iterator[Sandbox]:
    """A sandbox running in a thread of this process, for commands that share its state."""
    ready: concurrent.futures.Future[tuple[Sandbox, asyncio.AbstractEventLoop, asyncio.Event]]
    ready = concurrent.futures.Future()

    def main() -> None:
        async def serve() -> None:
            stop = asyncio.Event()
            async with Sandbox(**options) as sb:  # type: ignore[arg-type]
                ready.set_result((sb, asyncio.get_running_loop(), stop))
                await stop.wait()

        asyncio.run(serve())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    sb, loop, stop = ready.result(timeout=10)
    try:
        yield sb
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


#: A state directory of the script's own, for the command line's default journal.
_STATE = tempfile.TemporaryDirectory(prefix="gsim-screenshots-")


class Scene:
    """One screenshot: a few commands typed at a prompt, and what they printed."""

    def __init__(self, env: dict[str, str | None]) -> None:
        # A colour terminal that is not interactive: rich's live display shows no frames.
        # No journal: the screenshots' sandboxes die with them (and the user's own
        # state directory is left alone). No fleet either: the docs build has no
        # redis-py, and a GSIM_FLEET_URL in the shell names somebody's real fleet.
        self.env = {
            **env,
            "COLUMNS": str(WIDTH),
            "FORCE_COLOR": "1",
            "TTY_INTERACTIVE": "0",
            "GSIM_JOURNAL": None,
            "GSIM_FLEET_URL": None,
            "XDG_STATE_HOME": _STATE.name,
        }
        self.console = Console(
            file=io.StringIO(),
            record=True,
            width=WIDTH,
            force_terminal=True,
            color_system="truecolor",
        )

    def run(self, *args: str, shown: str | None = None, check: bool = True) -> None:
        """Run ``gsim ARGS`` and add the prompt line and its output to the screenshot."""
        prompt = Text("$ ", style="bold green")
        prompt.append(shown or "gsim " + shlex.join(args), style="bold")
        self.console.print(prompt)
        result = CliRunner().invoke(cli, list(args), env=self.env, color=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if check and result.exit_code != 0:
            raise SystemExit(f"gsim {shlex.join(args)}: exit {result.exit_code}: {result.stderr}")
        # stderr first: notes come before results in a terminal too.
        for stream in (result.stderr, result.stdout):
            if stream:
                self.console.print(Text.from_ansi(stream.rstrip("\n")))

    def json(self, *args: str) -> Any:
        """``gsim --json ARGS``, parsed, left out of the screenshot."""
        result = CliRunner().invoke(cli, ["--json", *args], env=self.env)
        return json.loads(result.stdout)

    def save(self, name: str, title: str) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}.svg"
        self.console.save_svg(str(path), title=title)
        return path


def get_code(no_account: dict[str, str | None]) -> Scene:
    scene = Scene(no_account)
    scene.run("--sandbox", "get-code", "telegram", "russia")
    scene.run("--sandbox", "--json", "get-code", "telegram", "russia")
    return scene


def session(no_account: dict[str, str | None]) -> Scene:
    with served(seed=1, code_delay=CODE_DELAY) as sb:
        scene = Scene({**no_account, "GSIM_API_KEY": sb.api_key, "GSIM_BASE_URL": sb.base_url})
        scene.run("balance")
        scene.run("operators", "telegram", "russia")
        scene.run("--poll-interval", POLL, "get-code", "whatsapp", "india", "-n", "3")
        scene.run("orders", "--limit", "3")
        scene.run("balance", "--json")
    return scene


def errors(no_account: dict[str, str | None]) -> Scene:
    scene = Scene(no_account)
    scene.run("balance", check=False)
    scene.run("--sandbox", "get-code", "telegran", "russia", check=False)
    scene.run("--sandbox", "get-code", "telegram", "russia", "--timeout", "0", check=False)
    scene.run("--json", "operators", "telegram", check=False)
    return scene


def rentals(no_account: dict[str, str | None]) -> Scene:
    with served(seed=2) as sb:
        scene = Scene({**no_account, "GSIM_API_KEY": sb.api_key, "GSIM_BASE_URL": sb.base_url})
        scene.run("rentals", "search", "US", "--area-code", "510", "--sms", "--limit", "3")
        number = scene.json("rentals", "search", "US", "--area-code", "510", "--limit", "1")[0]
        scene.run(
            "rentals", "rent", number["phone_number"], "--country", "US",
            "--monthly-price", "1.15",
        )  # fmt: skip
        scene.run("rentals", "list")
    return scene


SCENES: dict[str, tuple[str, Callable[[dict[str, str | None]], Scene]]] = {
    "get-code": ("gsim --sandbox get-code", get_code),
    "session": ("gsim against a sandbox", session),
    "errors": ("gsim errors", errors),
    "rentals": ("gsim rentals", rentals),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="*", help=f"some of {', '.join(SCENES)} (default: all)")
    names = parser.parse_args(argv).scenes or list(SCENES)
    unknown = set(names) - set(SCENES)
    if unknown:
        parser.error(f"no such scene: {', '.join(sorted(unknown))}")
    # The embedded sandbox of --sandbox delivers codes after 2-5 s for people to watch.
    gsim_async.cli._context.SANDBOX_CODE_DELAY = CODE_DELAY
    no_account: dict[str, str | None] = {
        "GSIM_API_KEY": None,
        "GSIM_BASE_URL": None,
        "GSIM_SANDBOX": None,
    }
    for name in names:
        title, make = SCENES[name]
        path = make(no_account).save(name, title)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
