"""Checks that need no reference: word errors and FIFO flags per tile, quiet chips, and the
io_group-wide ones (sync, data staleness) on tile 0."""

from __future__ import annotations

import numpy as np

from exporter.quality.checks import Check, CheckContext
from exporter.quality.grades import IO_GROUP_TILE, NOT_ENOUGH_DATA, TileGrade, where


class _TileFraction(Check):
    """A per-tile ratio of two channel columns, judged from ``min_packets`` data packets."""

    numerator: str
    what: str

    def grade(self, context: CheckContext) -> list[TileGrade]:
        view = context.view
        tile_key = view.io_group << 8 | view.tile
        part = np.bincount(tile_key, weights=getattr(view, self.numerator), minlength=1 << 16)
        whole = np.bincount(tile_key, weights=view.count, minlength=1 << 16)
        grades = []
        for group, tile in context.tiles():
            n, bad = int(whole[group << 8 | tile]), int(part[group << 8 | tile])
            if n < self.limits["min_packets"]:
                grades.append(TileGrade(self.name, group, tile, NOT_ENOUGH_DATA,
                                        f"{where(group, tile)}: not enough data ({n:,} data "
                                        f"packets, {self.limits['min_packets']:,.0f} needed)"))
                continue
            grades.append(self.graded(group, tile, bad / n,
                                      f"{where(group, tile)}: {bad / n:.2%} of {n:,} data "
                                      f"packets {self.what} ({bad:,})"))
        return grades


class ParityErrors(_TileFraction):
    name = "parity_errors"
    numerator = "parity_errors"
    what = "with bad parity"
    description = "packets with bad parity per data packet of the tile"
    defaults = {"warning": 0.01, "bad": 0.05, "min_packets": 1000.0}


class FifoFull(_TileFraction):
    name = "fifo_full"
    numerator = "fifo_full"
    what = "flagged FIFO full"
    description = "data packets flagged with a full local or shared FIFO, per data packet"
    defaults = {"warning": 0.02, "bad": 0.1, "min_packets": 1000.0}


class QuietChips(Check):
    name = "quiet_chips"
    description = ("chips without data in the rate window while the other chips of their "
                   "io_channel sent at least min_expected packets each on average; chips "
                   "with every channel masked are not judged")
    defaults = {"warning": 0.005, "bad": 0.05, "min_expected": 10.0}

    def grade(self, context: CheckContext) -> list[TileGrade]:
        view = context.view
        chips, inverse = np.unique(view.chip, return_inverse=True)
        in_window = np.bincount(inverse, weights=view.rate_hz * context.rate_window,
                                minlength=len(chips))
        enabled = np.bincount(inverse, weights=~view.disabled, minlength=len(chips)) > 0
        io_channel = chips >> 8
        pairs, pair_of = np.unique(io_channel, return_inverse=True)
        pair_total = np.bincount(pair_of, weights=in_window * enabled, minlength=len(pairs))
        pair_chips = np.bincount(pair_of, weights=enabled, minlength=len(pairs))
        others = np.maximum(pair_chips[pair_of] - 1, 1)
        expected = (pair_total[pair_of] - in_window) / others
        judged = enabled & (expected >= self.limits["min_expected"])
        quiet = judged & (in_window == 0)
        group, tile = chips >> 16, np.where(io_channel & 255, ((io_channel & 255) - 1) // 4 + 1, 0)
        grades = []
        for g, t in context.tiles():
            here = (group == g) & (tile == t)
            n, q = int((judged & here).sum()), int((quiet & here).sum())
            if n == 0:
                grades.append(TileGrade(self.name, g, t, NOT_ENOUGH_DATA,
                                        f"{where(g, t)}: not enough data (no io_channel with "
                                        "data in the rate window)"))
                continue
            grades.append(self.graded(g, t, q / n, f"{where(g, t)}: {q:,} of {n:,} chips "
                                                   "quiet while their io_channel has data"))
        return grades


class _GroupCheck(Check):
    """A check of each io_group as a whole, reported on tile 0."""

    def grade(self, context: CheckContext) -> list[TileGrade]:
        return [self.group_grade(g, state) for g, state in sorted(context.groups.items())]

    def group_grade(self, group: int, state) -> TileGrade:
        raise NotImplementedError

    def not_enough(self, group: int, why: str) -> TileGrade:
        return TileGrade(self.name, group, IO_GROUP_TILE, NOT_ENOUGH_DATA,
                         f"{where(group, IO_GROUP_TILE)}: not enough data ({why})")


class SyncDrift(_GroupCheck):
    name = "sync_drift"
    description = "|last 'S' sync timestamp - 10,000,000| in clock ticks"
    defaults = {"warning": 100.0, "bad": 10_000.0}

    def group_grade(self, group: int, state) -> TileGrade:
        if state.sync_offset is None:
            return self.not_enough(group, "no 'S' sync packet yet")
        drift = abs(state.sync_offset)
        return self.graded(group, IO_GROUP_TILE, drift,
                           f"{where(group, IO_GROUP_TILE)}: last sync {state.sync_offset:+,} "
                           "ticks off 10,000,000")


class SyncMissing(_GroupCheck):
    name = "sync_missing"
    description = "fraction of data seconds that passed without an 'S' sync"
    defaults = {"warning": 0.25, "bad": 0.5, "min_seconds": 10.0}

    def group_grade(self, group: int, state) -> TileGrade:
        if state.data_seconds < self.limits["min_seconds"]:
            return self.not_enough(group, f"{state.data_seconds:,} data seconds")
        share = state.sync_gaps / state.data_seconds
        return self.graded(group, IO_GROUP_TILE, share,
                           f"{where(group, IO_GROUP_TILE)}: {state.sync_gaps:,} of "
                           f"{state.data_seconds:,} data seconds without an 'S' sync")


class Staleness(_GroupCheck):
    name = "staleness"
    description = ("wall-clock seconds since the io_group's data time last moved on "
                   "(live monitoring only)")
    defaults = {"warning": 60.0, "bad": 300.0}

    def grade(self, context: CheckContext) -> list[TileGrade]:
        return [self.group_grade(g, s) for g, s in sorted(context.groups.items())
                if s.stale_seconds is not None]

    def group_grade(self, group: int, state) -> TileGrade:
        return self.graded(group, IO_GROUP_TILE, state.stale_seconds,
                           f"{where(group, IO_GROUP_TILE)}: no new data for "
                           f"{state.stale_seconds:,.0f} s")
