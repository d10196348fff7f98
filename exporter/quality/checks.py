"""What a check is, and what it is given.

A check is one small class with one job, like a plot: a ``name`` (the
``check`` label), a ``description``, its ``limits`` with their defaults, and
``grade(context)`` returning a ``TileGrade`` per tile it can speak about.
``ChannelCheck`` is the base of the per-channel checks: a subclass says which
channels it can judge and which of those it flags; the base grades each tile
by the fraction flagged, and says "not enough data" when too few could be
judged. Register a new check by adding its class to ``exporter.quality.CHECKS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from exporter.quality.grades import NOT_ENOUGH_DATA, TileGrade, grade_of, where
from exporter.quality.table import ChannelView


@dataclass(frozen=True)
class GroupState:
    """What an io_group-wide check needs of one io_group."""

    sync_offset: int | None     # last 'S' sync timestamp - 10,000,000 (None: no sync yet)
    sync_gaps: int              # data seconds without an 'S' sync
    data_seconds: int           # data seconds seen
    stale_seconds: float | None  # wall seconds since its data time last moved (None: once)


@dataclass(frozen=True)
class CheckContext:
    """Everything the checks read, taken at one moment."""

    view: ChannelView
    rate_window: float
    hot_rate: float
    groups: Mapping[int, GroupState] = field(default_factory=dict)
    reference_name: str | None = None
    #: Why the reference cannot be used (missing, corrupt), None when it can.
    reference_problem: str | None = None
    #: Per io_group, why the reference does not fit it (another detector).
    reference_mismatch: Mapping[int, str] = field(default_factory=dict)
    #: Per io_group, this run's packets per reference packet (see ``count_scale``).
    scale: Mapping[int, float] = field(default_factory=dict)

    def tiles(self) -> list[tuple[int, int]]:
        """(io_group, tile) of every tile with channels."""
        view = self.view
        pairs = np.unique(view.io_group << 8 | view.tile)
        return [(int(p >> 8), int(p & 255)) for p in pairs.tolist() if p & 255]

    def expected(self) -> np.ndarray:
        """Each channel's packets expected now from its reference count."""
        scale = np.zeros(256)
        for group, value in self.scale.items():
            scale[group] = value
        return self.view.ref_count * scale[self.view.io_group]


class Check:
    """One quality check: subclasses set ``name``, ``description``, ``defaults``, ``grade``."""

    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[dict[str, float]]
    needs_reference: ClassVar[bool] = False

    def __init__(self, limits: Mapping[str, float] | None = None) -> None:
        self.limits = {**self.defaults, **(limits or {})}

    def grade(self, context: CheckContext) -> list[TileGrade]:
        raise NotImplementedError

    def graded(self, io_group: int, tile: int, value: float, reason: str) -> TileGrade:
        """A grade from ``value`` against the warning/bad limits; the reason kept unless good."""
        grade = grade_of(value, self.limits["warning"], self.limits["bad"])
        return TileGrade(self.name, io_group, tile, grade, reason if grade else "", value)


@dataclass(frozen=True)
class Judged:
    """A per-channel check's answer: which channels it applies to, could judge, flagged."""

    candidates: np.ndarray
    judged: np.ndarray
    flagged: np.ndarray


class ChannelCheck(Check):
    """Grades tiles by the fraction of their judged channels that are flagged."""

    #: The channel status (``larpix_channels``) of a flagged channel.
    status: ClassVar[str]
    #: Words of the reason: "12 of 6,400 channels <verb>".
    verb: ClassVar[str]

    def judge(self, context: CheckContext) -> Judged:
        raise NotImplementedError

    def grade(self, context: CheckContext) -> list[TileGrade]:
        if self.needs_reference and context.reference_problem is not None:
            return [TileGrade(self.name, g, t, NOT_ENOUGH_DATA,
                              f"{where(g, t)}: {context.reference_problem}")
                    for g, t in context.tiles()]
        judged = self.judge(context)
        return [self._tile(context, judged, g, t) for g, t in context.tiles()]

    def _tile(self, context: CheckContext, judged: Judged, group: int, tile: int) -> TileGrade:
        view = context.view
        here = (view.io_group == group) & (view.tile == tile)
        mismatch = context.reference_mismatch.get(group) if self.needs_reference else None
        if mismatch is not None:
            return TileGrade(self.name, group, tile, NOT_ENOUGH_DATA,
                             f"{where(group, tile)}: {mismatch}")
        candidates = int((judged.candidates & here).sum())
        n = int((judged.judged & here).sum())
        flagged = int((judged.flagged & here).sum())
        if n == 0 or n < self.limits.get("min_judged_fraction", 0.5) * candidates:
            return TileGrade(self.name, group, tile, NOT_ENOUGH_DATA,
                             f"{where(group, tile)}: not enough data ({n:,} of "
                             f"{candidates:,} channels have enough packets to judge)")
        versus = (f" vs reference run {context.reference_name}"
                  if self.needs_reference and context.reference_name else "")
        return self.graded(group, tile, flagged / n,
                           f"{where(group, tile)}: {flagged:,} of {n:,} channels "
                           f"{self.verb}{versus}")
