"""Evidence of another buyer on the key, with and without a fleet to ask."""

from __future__ import annotations

from datetime import datetime

from gsim_async._clock import ServerClock
from gsim_async._ownership import Key, Ownership


class Fleet:
    """A fleet's sightings as ``Ownership`` sees them; Redis up or down at will."""

    def __init__(self) -> None:
        self.active = True
        self.foreign = False
        self.marked: list[str] = []
        self.seen: list[str] = []

    def sighted(self, item_id: str, key: Key, created_at: datetime | None) -> None:
        self.seen.append(item_id)

    def mark_foreign(self, item_id: str) -> None:
        self.marked.append(item_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_another_buyer_is_remembered_for_an_hour_without_a_fleet() -> None:
    clock = Clock()
    ownership = Ownership(ServerClock(), monotonic=clock)
    ownership.foreign("ord_other")
    assert ownership.foreign_buyer
    clock.now += 3599
    assert ownership.foreign_buyer
    clock.now += 2
    assert not ownership.foreign_buyer


def test_what_a_member_saw_cut_off_from_redis_ends_with_the_outage() -> None:
    # Alone, another member's order looks like another buyer's: nothing is guessed
    # then, but once Redis is back the fleet's exact records decide again (kept an hour,
    # every lost answer after a Redis restart left its order charged).
    clock = Clock()
    fleet = Fleet()
    ownership = Ownership(ServerClock(), monotonic=clock)
    ownership.attach(fleet)
    fleet.active = False
    ownership.foreign("ord_of_another_member")
    assert ownership.foreign_buyer
    assert fleet.marked == []
    fleet.active = True
    assert not ownership.foreign_buyer
    fleet.active = False  # cut off again soon after: the evidence still counts then
    clock.now += 10
    assert ownership.foreign_buyer


def test_another_buyer_seen_with_the_fleet_up_counts_and_is_told_to_it() -> None:
    fleet = Fleet()
    ownership = Ownership(ServerClock(), monotonic=Clock())
    ownership.attach(fleet)
    ownership.foreign("ord_other")
    assert ownership.foreign_buyer
    assert fleet.marked == ["ord_other"]
    fleet.active = False
    assert ownership.foreign_buyer
