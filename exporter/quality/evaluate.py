"""One evaluation: a run's channels (+ reference, masks, io_group state) -> grades and
channels per status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from exporter.quality.checks import ChannelCheck, Check, CheckContext, GroupState
from exporter.quality.grades import GOOD, NOT_ENOUGH_DATA, TileGrade
from exporter.quality.masks import ChannelMasks
from exporter.quality.reference import Reference
from exporter.quality.table import ChannelView, RunChannels, join

#: Statuses of ``larpix_channels``; a channel flagged by several checks takes the first.
STATUSES = ("ok", "disabled", "dead", "hot", "shifted", "noisy")
#: Below this share of its seen channels known to the reference, an io_group is
#: another detector's (or another configuration's): reference checks say -1.
MIN_KNOWN_FRACTION = 0.5
#: Chips with fewer reference packets than this do not vote on the count scale.
_MIN_CHIP_REFERENCE = 20


@dataclass(frozen=True)
class QualityResult:
    """Every check's grade per tile and the channels per status per tile."""

    grades: list[TileGrade]
    #: (io_group, tile) -> status -> channels
    channels: dict[tuple[int, int], dict[str, int]]
    reference: str | None = None
    reference_problem: str | None = None
    checks: list[str] = field(default_factory=list)

    def worst(self) -> int:
        return max((g.grade for g in self.grades), default=NOT_ENOUGH_DATA)

    def as_dict(self) -> dict:
        return {
            "worst": self.worst(),
            "reference": self.reference,
            "reference_problem": self.reference_problem,
            "checks_run": self.checks,
            "grades": [g.as_dict() for g in self.grades],
            "problems": [g.as_dict() for g in self.grades if g.grade != GOOD],
            "channels": [{"io_group": g, "tile": t, **counts}
                         for (g, t), counts in sorted(self.channels.items())],
        }


def context_of(run: RunChannels, *, rate_window: float, hot_rate: float,
               reference: Reference | None = None, reference_problem: str | None = None,
               masks: ChannelMasks | None = None,
               groups: Mapping[int, GroupState] | None = None) -> CheckContext:
    """What the checks read: the run joined with the reference and the masks."""
    view = join(run, reference, masks)
    if reference is None and reference_problem is None:
        reference_problem = "no reference run given (--reference)"
    return CheckContext(
        view=view, rate_window=rate_window, hot_rate=hot_rate, groups=groups or {},
        reference_name=reference.name if reference is not None else None,
        reference_problem=reference_problem if reference is None else None,
        reference_mismatch=_mismatch(view) if reference is not None else {},
        scale=count_scale(view) if reference is not None else {})


def statuses(checks: Sequence[Check], context: CheckContext) -> np.ndarray:
    """Each channel's status, as an index into STATUSES: the first of the statuses the
    per-channel checks gave it (disabled before all)."""
    view = context.view
    status = np.zeros(len(view), np.int8)
    for check in checks:
        if not isinstance(check, ChannelCheck) or (
                check.needs_reference and context.reference_problem):
            continue
        flagged = check.judge(context).flagged
        if check.needs_reference and context.reference_mismatch:
            flagged = flagged & ~np.isin(view.io_group, list(context.reference_mismatch))
        code = STATUSES.index(check.status)
        status = np.where(flagged & ((status == 0) | (status > code)), code, status)
    status[view.disabled] = STATUSES.index("disabled")
    return status


def evaluate(checks: Sequence[Check], run: RunChannels, **options) -> QualityResult:
    """Grade every tile with every check; ``options`` as ``context_of``."""
    context = context_of(run, **options)
    grades = [grade for check in checks for grade in check.grade(context)]
    return QualityResult(grades, _per_tile(context.view, statuses(checks, context)),
                         context.reference_name, context.reference_problem,
                         [c.name for c in checks])


def channel_status(checks: Sequence[Check], run: RunChannels, **options) -> dict[int, str]:
    """Channel key -> status, for every channel a check can speak about."""
    context = context_of(run, **options)
    names = np.array(STATUSES)[statuses(checks, context)]
    return dict(zip(context.view.key.tolist(), names.tolist(), strict=True))


def _per_tile(view: ChannelView, status: np.ndarray) -> dict[tuple[int, int], dict[str, int]]:
    key = (view.io_group << 8 | view.tile) * len(STATUSES) + status
    counts = np.bincount(key, minlength=256 * 256 * len(STATUSES)).reshape(-1, len(STATUSES))
    out = {}
    for pair in np.flatnonzero(counts.sum(axis=1)).tolist():
        if pair & 255:
            out[(pair >> 8, pair & 255)] = dict(zip(STATUSES, counts[pair].tolist(), strict=True))
    return out


def count_scale(view: ChannelView) -> dict[int, float]:
    """Per io_group, this run's packets per reference packet: the median over chips.

    Chip sums are precise where single channels are not, and the median ignores
    the few chips a fault made dead or hot.
    """
    known = view.ref_count > 0
    chips, inverse = np.unique(view.chip[known], return_inverse=True)
    now = np.bincount(inverse, weights=view.count[known], minlength=len(chips))
    before = np.bincount(inverse, weights=view.ref_count[known], minlength=len(chips))
    voting = before >= _MIN_CHIP_REFERENCE
    group = chips >> 16
    return {int(g): float(np.median(now[voting & (group == g)] / before[voting & (group == g)]))
            for g in np.unique(group[voting]).tolist()}


def _mismatch(view: ChannelView) -> dict[int, str]:
    """io_groups whose channels the reference mostly does not know."""
    seen = view.count > 0
    out = {}
    for group in np.unique(view.io_group[seen]).tolist():
        mine = seen & (view.io_group == group)
        known = int((mine & (view.ref_count > 0)).sum())
        if known < MIN_KNOWN_FRACTION * mine.sum():
            out[group] = (f"reference does not match this detector (knows {known:,} of "
                          f"{int(mine.sum()):,} channels seen)")
    return out
