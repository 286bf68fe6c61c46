"""How ``gsim fleet status`` shows a fleet to people: a few summary lines and a table."""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from ..fleet import FleetStatus, MemberState, MemberStatus, Obligations
from ._output import when

COLUMNS = [
    "member",
    "state",
    "host",
    "pid",
    "age",
    "beat",
    "held",
    "owed",
    "due",
    "429s",
    "",
]
#: Columns of free text, wrapped on a narrow terminal (the others are never cut).
_WRAPPED = frozenset({"host", "owed", ""})
_MIN_WIDTH = {"host": 6, "owed": 17, "": 6}
#: Member ids are shown by their first characters (``--json`` has them whole), as git
#: shows commits: enough to tell a fleet's members apart, and to find one in the logs.
SHORT_ID = 8

_STATE_STYLE = {MemberState.ALIVE: "green", MemberState.SILENT: "yellow", MemberState.DEAD: "red"}


def span(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m 05s``, ``2h 07m``, ``3d 4h``: a duration for people."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def short(member_id: str) -> str:
    """A member's id as the table shows it."""
    return member_id[:SHORT_ID]


def _rate(value: float | None) -> str:
    return "unpaced" if value is None else f"{value:.2f} req/s"


def _due(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = (moment - now).total_seconds()
    return f"in {span(seconds)}" if seconds >= 0 else f"{span(-seconds)} ago"


def owed_text(owed: Obligations) -> str:
    """``2 waits, 1 on the wire``: what one member owes, by kind."""
    parts = [
        (owed.purchases, "on the wire", "on the wire"),
        (owed.waits, "wait", "waits"),
        (owed.activations, "activation", "activations"),
        (owed.orders, "order", "orders"),
        (owed.refunds, "refund", "refunds"),
        (owed.rentals, "rental", "rentals"),
    ]
    return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n)


def _tag(member: MemberStatus) -> str:
    tags = [
        ("leader", member.leader),
        ("gone", member.process_gone),
        ("taken", member.taken_over is not None),  # by whom: the lines below the table
    ]
    return ",".join(name for name, on in tags if on)


def _leader_alive(status: FleetStatus) -> bool:
    leader = status.leader
    holder = None if leader is None else status.member(leader.member)
    return leader is not None and leader.valid and holder is not None and holder.alive


def notes(status: FleetStatus) -> list[str]:
    """Lines below the table: what became of the dead members' obligations."""
    lines = []
    for member in status.members:
        taken = member.taken_over
        if taken is not None:
            when_taken = f" {_due(taken.at, status.read_at)}" if taken.at else ""
            lines.append(
                f"{short(member.id)} was taken over by {short(taken.by)}{when_taken}: "
                f"{taken.rows} purchase(s) and order(s) it owed, refunded by the leader"
            )
        elif member.state is MemberState.DEAD and member.obligations.total:
            gone = "its process is gone" if member.process_gone else "silent too long"
            who = (
                "the leader takes them over"
                if _leader_alive(status)
                else "[red]no live leader to take them over[/]"
            )
            lines.append(
                f"{short(member.id)} is dead ({gone}) and owes {owed_text(member.obligations)}: "
                f"{who}"
            )
    return lines


def member_row(member: MemberStatus, status: FleetStatus) -> list[Text]:
    """One line of the members table."""
    cells = [
        short(member.id),
        str(member.state),
        member.host or "",
        "" if member.pid is None else str(member.pid),
        "" if member.age is None else span(member.age),
        "" if member.silent_for is None else span(member.silent_for),
        str(member.held),
        owed_text(member.obligations),
        _due(member.obligations.next_due, status.read_at),
        str(member.throttled),
        _tag(member),
    ]
    row = [Text(cell) for cell in cells]
    row[1].stylize(_STATE_STYLE[member.state])
    return row


def summary(status: FleetStatus) -> list[str]:
    """The lines above the table: members, leader, gate, 429s, ownership (rich markup)."""
    by_state = {s: sum(1 for m in status.members if m.state is s) for s in MemberState}
    counts = ", ".join(
        f"[{_STATE_STYLE[s]}]{n} {s}[/]" for s, n in by_state.items() if n or s is MemberState.ALIVE
    )
    lines = [f"[bold]fleet[/] {status.prefix} at {status.where}: {counts}"]
    leader = status.leader
    if leader is None:
        lines.append("leader: [yellow]none[/] (a live member claims the lease within one)")
    else:
        lease = "" if leader.lease_left is None else f", lease {span(leader.lease_left)} left"
        holder = status.member(leader.member)
        if not leader.valid:
            lease += " [red](void: its member was taken over)[/]"
        elif holder is not None and not holder.alive:
            lease += " [red](dead: a live member takes the lease once it runs out)[/]"
        lines.append(f"leader: {short(leader.member)}{lease}")
    gate = status.gate
    if gate is not None:
        text = f"gate: {gate.phase or '?'}, {_rate(gate.rate)}"
        text += f", accepted {gate.accepted_rate:.2f} req/s (last 10 s)"
        if gate.paused:
            text += (
                f"; [red]paused[/] {span(gate.paused_for)} more "
                f"(until {when(gate.paused_until, seconds=True)})"
            )
        lines.append(text)
    minute, hour = status.throttled_within(60), status.throttled_within(3600)
    if status.throttles:
        last = status.throttles[0]
        kind = "it began a pause" if last.began_pause else "during a pause"
        lines.append(
            f"429s: {minute} in the last minute, {hour} in the last hour; the last "
            f"{_due(last.at, status.read_at)}, met by {short(last.member)} "
            f"(Retry-After {last.retry_after:g} s; {kind})"
        )
    else:
        lines.append("429s: none remembered")
    extra = f"waiting through the leader: {status.waiting}"
    extra += f"; ownership records: {status.ownership_records}"
    if status.foreign_buyer:
        extra += "; [yellow]another buyer (not a member) bought on this key recently[/]"
    lines.append(extra)
    return lines


def render(status: FleetStatus) -> RenderableType:
    """The whole view: the summary lines, then a line per member."""
    if status.empty:
        return Text.from_markup(
            f"no fleet on this key at {status.where} yet: no member has joined "
            f"(members join as their clients open; keys {status.prefix}:*)"
        )
    parts: list[RenderableType] = [Text.from_markup(line) for line in summary(status)]
    table = Table(
        *(
            Column(name, no_wrap=name not in _WRAPPED, min_width=_MIN_WIDTH.get(name))
            for name in COLUMNS
        ),
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for member in status.members:
        table.add_row(*member_row(member, status))
    parts.append(table if status.members else Text("no members", style="dim"))
    parts += [Text.from_markup(line) for line in notes(status)]
    return Group(*parts)
