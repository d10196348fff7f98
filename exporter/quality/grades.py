"""Grades and their reasons: what every check gives for every tile it can speak about."""

from __future__ import annotations

from dataclasses import dataclass

NOT_ENOUGH_DATA, GOOD, WARNING, BAD = -1, 0, 1, 2
GRADE_NAMES = {NOT_ENOUGH_DATA: "not enough data", GOOD: "good", WARNING: "warning", BAD: "bad"}

#: Tile of the checks that judge a whole io_group (its PACMAN: sync, data time).
IO_GROUP_TILE = 0


@dataclass(frozen=True)
class TileGrade:
    """One check's verdict on one tile (tile 0: the io_group as a whole)."""

    check: str
    io_group: int
    tile: int
    grade: int
    reason: str = ""            # why, for every grade but good
    value: float | None = None  # what was measured (a fraction, ticks, seconds)

    def as_dict(self) -> dict:
        return {"check": self.check, "io_group": self.io_group, "tile": self.tile,
                "grade": self.grade, "grade_name": GRADE_NAMES[self.grade],
                "reason": self.reason, "value": self.value}


def grade_of(value: float, warning: float, bad: float) -> int:
    """GOOD below ``warning``, WARNING from it, BAD from ``bad``."""
    if value >= bad:
        return BAD
    if value >= warning:
        return WARNING
    return GOOD


def where(io_group: int, tile: int) -> str:
    """How a reason names the place: 'io_group 1 tile 3', or 'io_group 1' for tile 0."""
    return f"io_group {io_group}" if tile == IO_GROUP_TILE else f"io_group {io_group} tile {tile}"
