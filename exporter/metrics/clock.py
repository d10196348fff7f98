"""Data time: which unix second each packet belongs to, carried across chunks per file.

A packet's data time is the unix time of the latest timestamp packet before it
(itself included) in the same io_group and the same file. Rows come in runs:
one PACMAN message = one timestamp packet followed by the words of one
io_group. So the work is done per *segment* (a maximal run of rows that starts
at a timestamp packet or at a change of io_group, and shares one data time),
and only the segment table is ever sorted or filled; rows get their second
back with one ``np.repeat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exporter.packets import TIMESTAMP

#: No data time yet (no timestamp packet of that io_group seen in the file).
NO_TIME = -1

N_GROUPS = 256


@dataclass(frozen=True)
class Segments:
    """Runs of rows sharing one io_group and one data time."""

    starts: np.ndarray    # first row of each segment
    lengths: np.ndarray   # rows in each segment
    group: np.ndarray     # io_group of each segment (uint8)
    second: np.ndarray    # data time of each segment (int64, NO_TIME if none)
    is_timestamp: np.ndarray  # whether the segment starts with a timestamp packet

    def within(self, start: int, stop: int) -> tuple[slice, np.ndarray, np.ndarray]:
        """The segments of rows ``start:stop``, their starts relative to ``start`` and lengths."""
        first = np.searchsorted(self.starts, start, side="right") - 1
        last = np.searchsorted(self.starts, stop, side="left")
        starts = self.starts[first:last] - start
        starts[0] = 0
        return slice(first, last), starts, np.diff(starts, append=stop - start)

    def of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Segment index of each of ``rows`` (sorted row indices)."""
        return np.searchsorted(self.starts, rows, side="right") - 1


class DataClock:
    """Latest timestamp-packet time per io_group, per source file."""

    def __init__(self) -> None:
        self._latest: dict[str, np.ndarray] = {}
        self._span: dict[str, tuple[int, int]] = {}

    def forget(self, source: str) -> None:
        self._latest.pop(source, None)
        self._span.pop(source, None)

    def drop_carry(self, source: str) -> None:
        """Forget the latest second of each io_group of a finished file (its span stays)."""
        self._latest.pop(source, None)

    def span(self, source: str) -> tuple[int, int] | None:
        """Earliest and latest timestamp-packet time of a file, if it had any."""
        return self._span.get(source)

    def segments(self, source: str, group: np.ndarray, timestamp_rows: np.ndarray,
                 timestamps: np.ndarray) -> Segments:
        """Split a chunk into segments and give each its data time.

        ``group`` is per row, ``timestamp_rows`` the (sorted) rows of timestamp
        packets and ``timestamps`` their unix times.
        """
        n = len(group)
        changes = np.flatnonzero(group[1:] != group[:-1]) + 1
        starts = sorted_unique(np.zeros(1, np.intp), changes, timestamp_rows)
        lengths = np.diff(starts, append=n)
        seg_group = np.ascontiguousarray(group[starts])
        seg_is_ts = np.isin(starts, timestamp_rows, assume_unique=True)
        own = np.full(len(starts), NO_TIME, np.int64)
        own[seg_is_ts] = timestamps
        if len(timestamps):
            first, last = self._span.get(source, (int(own[seg_is_ts].min()), 0))
            self._span[source] = (min(first, int(own[seg_is_ts].min())),
                                  max(last, int(own[seg_is_ts].max())))
        latest = self._latest.setdefault(source, np.full(N_GROUPS, NO_TIME, np.int64))
        second = _fill_forward_by_group(seg_group, own, latest)
        return Segments(starts, lengths, seg_group, second, seg_is_ts)

    def row_seconds(self, source: str, packets: np.ndarray) -> np.ndarray:
        """Data time of each row of a ``PACKET_DTYPE`` array (``NO_TIME`` where none yet).

        For callers that hold plain packet arrays (the plots): the same segments
        as the metrics, expanded back to one value per row.
        """
        if len(packets) == 0:
            return np.zeros(0, np.int64)
        stamps = np.flatnonzero(packets["packet_type"] == TIMESTAMP)
        seg = self.segments(source, packets["io_group"], stamps,
                            packets["timestamp"][stamps].astype(np.int64))
        return np.repeat(seg.second, seg.lengths)


def sorted_unique(*arrays: np.ndarray) -> np.ndarray:
    """The distinct values of ``arrays``, sorted (``np.union1d``'s hashing is ~20x slower)."""
    values = np.concatenate(arrays)
    values.sort()
    keep = np.ones(len(values), bool)
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _fill_forward_by_group(group: np.ndarray, own: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """Each segment's own time, else the previous one of its io_group, else ``carry``.

    Updates ``carry`` (per io_group) to the last time of each group seen.
    """
    order = np.argsort(group, kind="stable")   # radix sort: uint8 keys
    g = group[order]
    values = own[order]
    first = np.ones(len(g), bool)
    np.not_equal(g[1:], g[:-1], out=first[1:])
    inherit = first & (values == NO_TIME)
    values[inherit] = carry[g[inherit]]
    anchor = np.where((values != NO_TIME) | first, np.arange(len(g)), 0)
    np.maximum.accumulate(anchor, out=anchor)
    filled = values[anchor]
    last = np.ones(len(g), bool)
    last[:-1] = first[1:]
    carry[g[last]] = filled[last]
    second = np.empty_like(filled)
    second[order] = filled
    return second
