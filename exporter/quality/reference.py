"""The reference: the per-channel table of a good run, in one HDF5 file with its provenance.

Layout (``larpix-monitor reference RUN.h5 ... -o REF.h5``): one dataset
``channels`` with a row per channel (io_group, io_channel, tile, chip_id,
channel_id, count, rate_hz, adc_mean, adc_rms, pedestal, noise, status) and
attributes ``format`` (``larpix-monitor-reference``), ``format_version``,
``monitor_version``, ``created``, ``sources`` (JSON list of the run's files),
``span_start``/``span_end`` (first and last data second, unix time) and
``name`` (shown in reasons: "vs reference run NAME").
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from exporter import __version__
from exporter.quality.table import ChannelColumns, RunChannels, channel_key, key_parts, tile_of

FORMAT = "larpix-monitor-reference"
FORMAT_VERSION = 1

REFERENCE_DTYPE = np.dtype([
    ("io_group", "u1"), ("io_channel", "u1"), ("tile", "u1"), ("chip_id", "u1"),
    ("channel_id", "u1"), ("count", "i8"), ("rate_hz", "f8"), ("adc_mean", "f8"),
    ("adc_rms", "f8"), ("pedestal", "f8"), ("noise", "f8"), ("status", "S8"),
])


class ReferenceError(Exception):
    """A reference file that cannot be used; ``str()`` is one line naming the file."""

    def __init__(self, path: str | Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = str(path)


@dataclass(frozen=True)
class Reference:
    """A loaded reference: columns sorted by channel key, and where they came from."""

    name: str
    key: np.ndarray
    count: np.ndarray
    rate_hz: np.ndarray
    adc_mean: np.ndarray
    adc_rms: np.ndarray
    pedestal: np.ndarray
    noise: np.ndarray
    status: np.ndarray
    sources: tuple[str, ...]
    span: tuple[int, int] | None
    monitor_version: str
    path: str = ""


def build_reference(table: ChannelColumns, sources: list[str], span: tuple[int, int] | None,
                    name: str | None = None) -> Reference:
    """The reference of one run's table; ``rate_hz`` is the count over the whole data span."""
    run = RunChannels.from_columns(table)
    order = np.argsort(channel_key(table.io_group, table.io_channel, table.chip_id,
                                   table.channel_id), kind="stable")
    seconds = max(span[1] - span[0] + 1, 1) if span else np.nan
    status = (np.asarray(table.status)[order].astype("S8") if hasattr(table, "status")
              else np.full(len(run.key), b"ok", "S8"))
    return Reference(
        name=name or (Path(sources[0]).stem if sources else "reference"),
        key=run.key, count=run.count, rate_hz=run.count / seconds,
        adc_mean=_optional(table, "adc_mean", order), adc_rms=_optional(table, "adc_rms", order),
        pedestal=run.pedestal, noise=run.noise, status=status,
        sources=tuple(str(s) for s in sources), span=span, monitor_version=__version__)


def _optional(table, column: str, order: np.ndarray) -> np.ndarray:
    values = getattr(table, column, None)
    return (np.asarray(values, np.float64)[order] if values is not None
            else np.full(len(order), np.nan))


def write_reference(reference: Reference, path: str | Path) -> Path:
    """Write atomically: a temporary file beside ``path``, then a rename."""
    path = Path(path)
    rows = np.zeros(len(reference.key), REFERENCE_DTYPE)
    group, io_channel, chip, channel = key_parts(reference.key)
    rows["io_group"], rows["io_channel"], rows["chip_id"], rows["channel_id"] = (
        group, io_channel, chip, channel)
    rows["tile"] = tile_of(io_channel)
    for column in ("count", "rate_hz", "adc_mean", "adc_rms", "pedestal", "noise", "status"):
        rows[column] = getattr(reference, column)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("channels", data=rows, compression="gzip")
        attrs = f.attrs
        attrs["format"] = FORMAT
        attrs["format_version"] = FORMAT_VERSION
        attrs["monitor_version"] = reference.monitor_version
        attrs["created"] = time.time()
        attrs["name"] = reference.name
        attrs["sources"] = json.dumps(list(reference.sources))
        if reference.span is not None:
            attrs["span_start"], attrs["span_end"] = reference.span
    os.replace(tmp, path)
    return path


def load_reference(path: str | Path) -> Reference:
    """Read a reference written by ``write_reference``; ReferenceError says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ReferenceError(path, "no such reference file")
    if not path.is_file():
        raise ReferenceError(path, "reference is not a file")
    try:
        with h5py.File(path, "r", locking=False) as f:
            return _read(path, f)
    except ReferenceError:
        raise
    except OSError as error:
        detail = "not an HDF5 file" if "signature" in str(error) else "unreadable or truncated"
        raise ReferenceError(path, f"{detail} (not a larpix-monitor reference)") from None
    except (KeyError, ValueError, TypeError) as error:
        raise ReferenceError(path, f"corrupt reference ({error})") from None


def _read(path: Path, f: h5py.File) -> Reference:
    if f.attrs.get("format") != FORMAT or "channels" not in f:
        raise ReferenceError(path, "not a larpix-monitor reference (write one with "
                                   "'larpix-monitor reference RUN.h5 -o REF.h5')")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ReferenceError(path, f"reference format version {version} is not supported "
                                   f"(this monitor reads version {FORMAT_VERSION})")
    rows = f["channels"][()]
    missing = set(REFERENCE_DTYPE.names) - set(rows.dtype.names or ())
    if missing:
        raise ReferenceError(path, f"reference lacks columns {', '.join(sorted(missing))}")
    key = channel_key(rows["io_group"], rows["io_channel"], rows["chip_id"], rows["channel_id"])
    order = np.argsort(key, kind="stable")
    if len(key) and np.any(np.diff(key[order]) == 0):
        raise ReferenceError(path, "corrupt reference (a channel appears twice)")
    span = ((int(f.attrs["span_start"]), int(f.attrs["span_end"]))
            if "span_start" in f.attrs else None)
    rows = rows[order]
    return Reference(
        name=str(f.attrs.get("name", path.stem)), key=key[order],
        count=rows["count"].astype(np.int64), rate_hz=rows["rate_hz"],
        adc_mean=rows["adc_mean"], adc_rms=rows["adc_rms"], pedestal=rows["pedestal"],
        noise=rows["noise"], status=rows["status"],
        sources=tuple(json.loads(f.attrs.get("sources", "[]"))), span=span,
        monitor_version=str(f.attrs.get("monitor_version", "?")), path=str(path))
