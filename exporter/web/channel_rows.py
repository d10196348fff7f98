"""Per-channel tables as the shift crew reads them: filtered, sorted rows with pixel
positions, CSV, and the DAQ's disable list. Used by ``/api/channels``,
``/api/disable-list`` and ``once --channels/--disable-list``.

The pixel geometry join happens here (the metrics package knows nothing of
geometry): ``x_mm``, ``y_mm`` are the pixel's centre on its tile, from the
layout's ``[chip_id, channel_id]``; NaN (null in JSON, empty in CSV) where the
layout has no pixel for the channel or there is no layout.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from exporter.metrics import ChannelTable
from exporter.metrics.channels import STATUSES

COLUMNS = (*ChannelTable.COLUMNS, "x_mm", "y_mm")
NUMERIC = (*ChannelTable.NUMERIC, "x_mm", "y_mm")
FILTERS = ("io_group", "tile", "io_channel", "chip_id")
KEYS = ("chip", "tile")


class BadQuery(ValueError):
    """A query the table cannot answer; the message says why (HTTP 422)."""


@dataclass(frozen=True)
class Query:
    io_group: int | None = None
    tile: int | None = None
    io_channel: int | None = None
    chip_id: int | None = None
    status: str | None = None
    sort: str = "rate_hz"
    order: str = "desc"
    limit: int = 100

    def check(self) -> None:
        if self.sort not in NUMERIC:
            raise BadQuery(f"sort must be one of {', '.join(NUMERIC)}, not {self.sort!r}")
        if self.order not in ("asc", "desc"):
            raise BadQuery(f"order must be asc or desc, not {self.order!r}")
        if self.limit < 0:
            raise BadQuery("limit must be 0 (all) or more")
        if self.status is not None and self.status not in STATUSES:
            raise BadQuery(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")


def positions(table: ChannelTable, geometry) -> tuple[np.ndarray, np.ndarray]:
    """x_mm, y_mm of each row from a ``Geometry`` (or None), NaN where unknown."""
    if geometry is None or len(table) == 0:
        return np.full(len(table), np.nan), np.full(len(table), np.nan)
    tile = geometry.tile
    return tile.x[table.chip_id, table.channel_id], tile.y[table.chip_id, table.channel_id]


def select(table: ChannelTable, query: Query, geometry=None) -> tuple[int, dict[str, np.ndarray]]:
    """(rows matching the filters, columns of the rows to show: sorted and limited)."""
    query.check()
    keep = np.ones(len(table), bool)
    for name in FILTERS:
        wanted = getattr(query, name)
        if wanted is not None:
            keep &= getattr(table, name) == wanted
    if query.status is not None:
        keep &= table.status == query.status
    x, y = positions(table, geometry)
    columns = {name: getattr(table, name) for name in ChannelTable.COLUMNS}
    columns.update(x_mm=x, y_mm=y)
    index = np.flatnonzero(keep)
    values = columns[query.sort][index].astype(np.float64)
    # stable, NaN last either way; ties keep channel order
    order = np.argsort(-values if query.order == "desc" else values, kind="stable")
    order = np.concatenate([order[~np.isnan(values[order])], order[np.isnan(values[order])]])
    index = index[order]
    if query.limit:
        index = index[:query.limit]
    return int(keep.sum()), {name: column[index] for name, column in columns.items()}


def as_records(columns: dict[str, np.ndarray]) -> list[dict]:
    """JSON rows: ints as ints, floats as floats, NaN as null."""
    lists = {name: column.tolist() for name, column in columns.items()}
    n = len(lists["count"])
    return [{name: _json_value(lists[name][i]) for name in COLUMNS} for i in range(n)]


def _json_value(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def as_csv(columns: dict[str, np.ndarray], leading: dict[str, str] | None = None) -> str:
    """CSV with a header line; ``leading`` columns (e.g. the file) first, the same on every
    row. Floats in full precision (``repr``), NaN empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    lead = leading or {}
    writer.writerow([*lead, *COLUMNS])
    lists = [columns[name].tolist() for name in COLUMNS]
    for row in zip(*lists, strict=True):
        writer.writerow([*lead.values(), *("" if isinstance(v, float) and math.isnan(v)
                                           else repr(v) if isinstance(v, float) else v
                                           for v in row)])
    return out.getvalue()


def disable_list(table: ChannelTable, min_rate: float, key: str = "chip",
                 span: tuple[int, int] | None = None) -> dict[str, list[int]]:
    """Hot channels as the DAQ's disable list: ``{"io_group-io_channel-chip_id": [channels]}``
    (``key="tile"``: ``io_group-tile-chip_id``), channels sorted.

    The rate is ``rate_hz`` (the rate window), or with ``span`` (first, last data
    second of the file) the file's count over ``last - first + 1`` seconds.
    """
    if key not in KEYS:
        raise BadQuery(f"key must be chip or tile, not {key!r}")
    if span is None:
        rate = table.rate_hz
    else:
        rate = table.count / (span[1] - span[0] + 1)
    hot = np.flatnonzero(rate > min_rate)
    middle = table.io_channel if key == "chip" else table.tile
    listed: dict[str, set[int]] = {}
    for g, m, chip, channel in zip(table.io_group[hot].tolist(), middle[hot].tolist(),
                                   table.chip_id[hot].tolist(), table.channel_id[hot].tolist(),
                                   strict=True):
        listed.setdefault(f"{g}-{m}-{chip}", set()).add(channel)
    return {k: sorted(v) for k, v in sorted(listed.items(), key=lambda kv: _key_order(kv[0]))}


def _key_order(key: str) -> tuple[int, ...]:
    return tuple(int(part) for part in key.split("-"))
