"""The status strip on top of the gallery: one row per io_group, what a shifter checks first.

Per io_group: data rate over the rate window, parity errors as a share of
LArPix words (types 0-3), data packets with a FIFO full flag, hot and quiet
channels of the per-channel table of the file read last, and staleness (how
long ago its data time last moved, in wall-clock time). Every cell carries its
exact value in ``data-value`` (the browser test reads those).
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np

from exporter.metrics import DetectorMetrics
from exporter.metrics.families import FIFO_FLAGS
from exporter.packets import DATA, PARITY_TYPES

#: FIFO codes (local | shared << 2) with a full flag (local bit 1 or shared bit 1).
_FULL_CODES = np.flatnonzero((np.arange(16) & sum(bit for _, level, bit in FIFO_FLAGS
                                                  if level == "full")) > 0)

STRIP_STYLE = """
table.strip { border-collapse: collapse; background: #fff; margin-bottom: 1.2em;
              box-shadow: 0 1px 3px rgba(0,0,0,.15); font-size: .95em; }
table.strip th, table.strip td { padding: .3em .8em; border-bottom: 1px solid #e4e7ec;
                                 text-align: right; }
table.strip th { background: #e9ecf2; }
table.strip td.bad { color: #b3261e; font-weight: bold; }
"""


class StatusStrip:
    """Builds the strip; remembers when each io_group's data time last moved."""

    def __init__(self, detector: DetectorMetrics) -> None:
        self.detector = detector
        self._moved: dict[int, tuple[int, float]] = {}  # io_group -> (data time, wall time)

    def html(self) -> str:
        snap = self.detector.snapshot()
        table = self.detector.channel_table()
        groups = np.flatnonzero(snap.window.has_window).tolist()
        if not groups:
            return '<p class="empty">No data time yet: the status strip starts with the ' \
                   'first timestamp packet.</p>'
        chip_group = snap.chip_group
        words = np.bincount(chip_group, snap.packets[:, PARITY_TYPES].sum(axis=1), 256)
        errors = np.bincount(chip_group, snap.parity_errors[:, PARITY_TYPES].sum(axis=1), 256)
        full = np.bincount(chip_group, snap.fifo[:, _FULL_CODES].sum(axis=1), 256)
        now = time.time()
        rows = []
        for g in groups:
            stamp = int(snap.data_timestamp[g])
            if self._moved.get(g, (None,))[0] != stamp:
                self._moved[g] = (stamp, now)
            share = float(100 * errors[g] / words[g]) if words[g] else 0.0
            hot = quiet = 0
            if table is not None:
                mine = table.status[table.io_group == g]
                hot, quiet = int((mine == "hot").sum()), int((mine == "quiet").sum())
            moved = self._moved[g][1]
            rate = float(snap.window.rate_hz[g, DATA])
            rows.append(
                f'<tr data-io-group="{g}"><th>{g}</th>{_cell("rate", rate, f"{rate:,.1f} Hz")}'
                f'{_cell("parity", share, f"{share:.3f} %", share > 1)}'
                f'{_cell("fifo_full", int(full[g]), f"{int(full[g]):,}")}'
                f'{_cell("hot", hot, str(hot), hot > 0)}{_cell("quiet", quiet, str(quiet))}'
                f'<td data-name="stale" data-value="{moved!r}"><span data-time="{moved!r}">'
                f'{now - moved:.0f} s ago</span></td></tr>')
        link = ""
        if table is not None:
            stem = escape(quote(Path(table.file).stem, safe=""))
            link = (f'<p class="meta">channels of {escape(stem)}: '
                    f'<a href="/api/channels?file={stem}">top 100 by rate</a> · '
                    f'<a href="/api/channels?file={stem}&amp;limit=0&amp;format=csv">all (CSV)'
                    f'</a> · <a href="/api/channels?file={stem}&amp;status=hot&amp;limit=0">'
                    f'hot</a> · <a href="/api/disable-list?file={stem}">disable list</a></p>')
        return ('<table class="strip" id="status-strip"><tr><th>io_group</th><th>data rate</th>'
                '<th>parity errors</th><th>FIFO full</th><th>hot channels</th>'
                '<th>quiet channels</th><th>data time moved</th></tr>'
                + "".join(rows) + "</table>" + link)


def _cell(name: str, value: float, text: str, bad: bool = False) -> str:
    css = ' class="bad"' if bad else ""
    value = value.item() if isinstance(value, np.generic) else value
    return f'<td data-name="{name}" data-value="{value!r}"{css}>{escape(text)}</td>'
