"""``once --channels OUT.csv`` and ``once --disable-list OUT.json``: the per-channel tables
of the files read, written when every file is done.

A table is taken right after its file is read (while the detector's rate
window still holds that file). With several files the CSV gets a leading
``file`` column and the disable list the union of the files' hot channels.
The disable list always covers whole files: a channel is listed when its
count over the file's data-time span (first to last data second, inclusive)
is above ``--hot-rate``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from exporter.metrics import ChannelTable, DetectorMetrics
from exporter.render.geometry import shared_geometry
from exporter.web import channel_rows


class ChannelOutputs:
    """Collects each file's table and disable list; writes both files at the end."""

    def __init__(self, channels: Path | None, disable: Path | None, hot_rate: float) -> None:
        self.channels_path = channels
        self.disable_path = disable
        self.hot_rate = hot_rate
        self._tables: list[ChannelTable] = []
        self._disabled: dict[str, set[int]] = {}

    @property
    def wanted(self) -> bool:
        return self.channels_path is not None or self.disable_path is not None

    def take(self, detector: DetectorMetrics, path: Path) -> None:
        if not self.wanted:
            return
        table = detector.channel_table(str(path))
        if table is None:
            return
        if self.channels_path is not None:
            self._tables.append(table)
        span = detector.data_span(str(path))
        if self.disable_path is not None and span is not None:
            for key, channels in channel_rows.disable_list(table, self.hot_rate, "chip",
                                                           span).items():
                self._disabled.setdefault(key, set()).update(channels)

    def write(self) -> bool:
        """Write the asked files (atomically); False, with one line, if one cannot be."""
        ok = True
        if self.channels_path is not None:
            ok &= _write(self.channels_path, self._csv())
        if self.disable_path is not None:
            listed = {k: sorted(v) for k, v in sorted(
                self._disabled.items(), key=lambda kv: tuple(map(int, kv[0].split("-"))))}
            ok &= _write(self.disable_path, json.dumps(listed, indent=1) + "\n")
        return ok

    def _csv(self) -> str:
        geometry = shared_geometry()
        query = channel_rows.Query(sort="io_group", order="asc", limit=0)
        parts = []
        for i, table in enumerate(self._tables):
            _, columns = channel_rows.select(table, query, geometry)
            text = channel_rows.as_csv(columns, {"file": table.file}
                                       if len(self._tables) > 1 else None)
            parts.append(text if i == 0 else text.split("\n", 1)[1])
        return "".join(parts) or ",".join(channel_rows.COLUMNS) + "\n"


def _write(path: Path, text: str) -> bool:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as error:
        print(f"{path}: cannot write ({error.strerror or error})", file=sys.stderr)
        return False
    return True
