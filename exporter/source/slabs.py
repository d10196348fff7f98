"""Reading a run of rows that may cross a damaged HDF5 chunk.

A slab is read in one call; only if that fails (a chunk whose compressed bytes
no longer decompress, say) is it read again chunk by chunk (the dataset's
``chunks``), and just the chunks that fail are left out. Three quarters of a
file are not thrown away for one bad chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from exporter.packets import Empty
from exporter.source.opening import inner

_NO_BYTES = np.zeros(0, np.uint8)


@dataclass(frozen=True)
class Damage:
    """Rows ``start:stop`` of one dataset that could not be read."""

    dataset: str
    start: int
    stop: int
    detail: str
    #: Where the chunks are stored: the same damage seen twice is not a writer mid-write.
    storage: tuple

    @property
    def text(self) -> str:
        return (f"rows {self.start}-{self.stop - 1} of '{self.dataset}' unreadable "
                f"({self.detail}); skipped")


@dataclass
class Slab:
    """Rows read; the rows of ``damage`` hold zeros (empty messages for ``msgs``)."""

    rows: np.ndarray
    damage: list[Damage]

    def readable(self, offset: int = 0) -> np.ndarray | None:
        """Mask of the readable rows (None: all), for rows numbered from ``offset``."""
        return unreadable_mask(self.damage, offset, len(self.rows))


def read_slab(dset: h5py.Dataset, start: int, stop: int, dtype: np.dtype | None = None,
              limit: int | None = None,
              empty: Empty = np.empty) -> Slab:
    """Rows ``start:stop``, as ``dtype`` (the dataset's own if None), in an array from
    ``empty(rows, dtype)``. With ``limit``, an unreadable last chunk is skipped whole (up
    to row ``limit``), so the slab may end after ``stop``: the rest of a bad chunk is never
    read, and never reported, again."""
    dtype = dtype or dset.dtype
    out = np.zeros(stop - start, dtype) if dtype.hasobject else empty(stop - start, dtype)
    try:
        _read_into(dset, out, start, stop)
        return Slab(out, [])
    except OSError as error:
        if dset.chunks is None:
            raise
        first_error = error
    step = dset.chunks[0]
    damage: list[Damage] = []
    for low in range(start - start % step, stop, step):
        a, b = max(low, start), min(low + step, stop)
        try:
            _read_into(dset, out[a - start:b - start], a, b)
        except OSError as error:
            _blank(out, a - start, b - start)
            merge_damage(damage, Damage(dset.name.lstrip("/"), a, b, inner(str(error)),
                                        (_stored_at(dset, low),)))
    if not damage:  # the slab failed as a whole only: not a chunk of it
        raise first_error
    last = damage[-1]
    end = min(last.stop - (last.stop - 1) % step - 1 + step, limit or 0)
    if end > last.stop == stop:
        damage[-1] = Damage(last.dataset, last.start, end, last.detail, last.storage)
        out = np.concatenate([out, np.zeros(end - stop, out.dtype)])
        _blank(out, stop - start, end - start)
    return Slab(out, damage)


def unreadable_mask(damage: list[Damage], offset: int, n: int) -> np.ndarray | None:
    if not damage:
        return None
    keep = np.ones(n, bool)
    for d in damage:
        keep[max(0, d.start - offset):max(0, d.stop - offset)] = False
    return keep


def _read_into(dset: h5py.Dataset, out: np.ndarray, start: int, stop: int) -> None:
    if stop <= start:
        return
    if out.dtype.hasobject:
        out[:] = dset[start:stop]
    else:
        dset.read_direct(out, np.s_[start:stop])


def _blank(out: np.ndarray, a: int, b: int) -> None:
    if out.dtype.hasobject:
        for i in range(a, b):  # only on the failure path, at most one chunk of rows
            out[i] = _NO_BYTES
    else:
        out[a:b] = np.zeros(1, out.dtype)


def merge_damage(damage: list[Damage], new: Damage) -> None:
    """Adjacent bad chunks are one range, said once."""
    if damage and damage[-1].stop == new.start and damage[-1].detail == new.detail:
        last = damage[-1]
        damage[-1] = Damage(last.dataset, last.start, new.stop, last.detail,
                            last.storage + new.storage)
    else:
        damage.append(new)


def _stored_at(dset: h5py.Dataset, row: int) -> tuple[int, int] | None:
    try:
        info = dset.id.get_chunk_info_by_coord((row,))
    except (OSError, RuntimeError, ValueError):
        return None
    return info.byte_offset, info.size
