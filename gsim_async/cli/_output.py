"""What commands print: rich tables for people, one JSON document (or line) for scripts."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import click
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .._exceptions import APIError, GsimError

#: Columns of free text, wrapped rather than cut when the terminal is narrow.
_WRAPPED = frozenset({"body", "name"})


def to_data(value: object) -> Any:
    """``value`` as plain JSON data: snake_case keys, money as exact decimal strings,
    durations in seconds."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()  # a window or a cooldown, in seconds
    if attrs.has(type(value)):
        return {
            # Message.from_ / Call.from_: the trailing underscore only dodges the keyword.
            name.rstrip("_"): to_data(field)
            for name, field in attrs.asdict(value, recurse=False).items()  # type: ignore[arg-type]
        }
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    return value


def iso(moment: datetime) -> str:
    """``2024-03-15T10:00:00.000Z``, the API's own format."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def when(moment: datetime | None, *, seconds: bool = False) -> str:
    """A timestamp for people, in local time: to the minute in tables."""
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


def money(value: Decimal | None, currency: str = "USD") -> str:
    """``0.18 USD``; empty when unknown."""
    return "" if value is None else f"{value} {currency}"


def amount(value: Decimal | None) -> str:
    """``0.18``: money in a table, whose amounts are all USD as the API's are."""
    return "" if value is None else str(value)


class Output:
    """Where a command's results go: ``--json`` gives data, otherwise rich text."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        # Created per command so tests that swap sys.stdout (click's runner) are honoured.
        self.console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        if not self.console.is_terminal and "COLUMNS" not in os.environ:
            # A pipe or a file: whole lines for grep, not a table squeezed into 80 columns.
            self.console.width = 200

    # -- results --

    def data(self, value: object) -> None:
        """Print ``value`` as one line of JSON (use in --json mode)."""
        click.echo(json.dumps(to_data(value), ensure_ascii=False))

    def result(self, value: object, text: str) -> None:
        """``value`` as JSON under --json, else ``text`` (rich markup allowed)."""
        if self.json:
            self.data(value)
        else:
            self.console.print(text)

    def table(
        self,
        value: object,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        title: str | None = None,
        empty: str = "nothing to show",
    ) -> None:
        """``value`` as JSON under --json, else a table of ``rows``."""
        if self.json:
            self.data(value)
            return
        # Text, not markup: an SMS body may well contain "[...]".
        lines = [[Text("" if cell is None else str(cell)) for cell in row] for row in rows]
        if not lines:
            self.console.print(f"[dim]{empty}[/]")
            return
        table = Table(
            *(Column(name, no_wrap=name not in _WRAPPED) for name in columns),
            title=title,
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for line in lines:
            table.add_row(*line)
        self.console.print(table)

    def fields(self, value: object, pairs: Iterable[tuple[str, object]]) -> None:
        """``value`` as JSON under --json, else a two-column table of name and value."""
        if self.json:
            self.data(value)
            return
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column()
        for name, cell in pairs:
            if cell is not None and cell != "":
                table.add_row(name, Text(str(cell)))
        self.console.print(table)

    def note(self, text: str) -> None:
        """A hint for people (stderr, never under --json)."""
        if not self.json:
            click.echo(text, err=True)

    # -- failures --

    def error(
        self,
        message: str,
        *,
        code: str | None = None,
        exit_code: int = 1,
        hint: str | None = None,
    ) -> None:
        """One line on stderr: ``gsim: error: ...`` (a JSON object under --json)."""
        error_line(message, code=code, exit_code=exit_code, hint=hint, as_json=self.json)

    def failure(self, exc: GsimError, exit_code: int, *, hint: str | None = None) -> None:
        """Report an SDK error as one line."""
        code = exc.code if isinstance(exc, APIError) else type(exc).__name__
        self.error(str(exc) or type(exc).__name__, code=code, exit_code=exit_code, hint=hint)


def error_line(
    message: str,
    *,
    code: str | None,
    exit_code: int,
    as_json: bool,
    hint: str | None = None,
) -> None:
    """Every error of the command line, usage errors included, in one of two forms.

    ``gsim: error: MESSAGE; HINT`` for people (in red on a terminal), or one JSON
    object for scripts: ``{"error": MESSAGE, "code": CODE, "exit_code": N}`` (and
    ``"hint"`` when there is one).
    """
    message = " ".join(message.split())
    if as_json:
        line: dict[str, object] = {"error": message, "code": code, "exit_code": exit_code}
        if hint:
            line["hint"] = hint
        click.echo(json.dumps(line, ensure_ascii=False), err=True)
        return
    click.secho("gsim: error: ", fg="red", bold=True, err=True, nl=False)
    click.echo(f"{message.rstrip('.')}; {hint}" if hint else message, err=True)
