"""What every ``get-code`` run shares: the live display and running its waits to the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ._output import Output


@contextlib.contextmanager
def live_progress(out: Output) -> Iterator[Progress | None]:
    """A live display on an interactive terminal; ``None`` for JSON, pipes and CI logs."""
    if out.json or not out.console.is_interactive:
        # A pipe, a file or a CI log (TTY_INTERACTIVE=0) gets the lines only.
        yield None
        return
    progress = Progress(
        SpinnerColumn(finished_text=" "),
        TextColumn("[bold]{task.description:<16}"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=out.console,
        transient=True,
    )
    with progress:
        yield progress


async def run_all(tasks: Sequence[asyncio.Future[Any]], interrupted: Callable[[], None]) -> None:
    """Wait for every task; on Ctrl-C cancel them (each refunds its order), report, re-raise.

    A task that failed is a bug: its exception is raised for the App to report.
    """
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        interrupted()
        raise
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
