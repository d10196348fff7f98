"""Packet rates vs data time by type, the mix of packet types, and parity errors."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import PACKET_TYPE_NAMES, PARITY_TYPES
from plotters._axes import (
    log_y,
    plain_log,
    rescale,
    set_title,
    to_datenum,
    utc_time_axis,
)
from plotters._bases import BuiltinPlot, TimeBinnedPlot


class PacketRate(TimeBinnedPlot):
    """Packet rate per data-time bin, one line per packet type and the total."""

    what = "Packet rate by type"

    def count(self, packets: np.ndarray, seconds: np.ndarray) -> None:
        self.bins.add(seconds, packets["packet_type"])

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(left=0.08, right=0.83, bottom=0.12)
        ax = fig.add_subplot()
        self.lines = [ax.plot([], [], "-", lw=1, label=PACKET_TYPE_NAMES[code])[0]
                      for code in self.bins.keys]
        self.total = ax.plot([], [], "k-", lw=1.5, label="total")[0]
        log_y(ax)
        utc_time_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    def refresh(self, fig: Figure) -> None:
        ax = fig.axes[0]
        x = to_datenum(self.bins.starts)
        rates = self.bins.counts / self.bins.width
        for column, drawn in enumerate(self.lines):
            drawn.set_data(x, rates[:, column])
        self.total.set_data(x, rates.sum(axis=1))
        ax.set_ylabel(f"rate [Hz] ({self.bins.width} s bins)")
        rescale(ax)


class PacketTypeFraction(BuiltinPlot):
    """Share of each packet type among all packets read so far."""

    what = "Packet types"
    figsize = (8.0, 5.0)

    def __init__(self) -> None:
        self.counts = np.zeros(len(PACKET_TYPE_NAMES))

    def update(self, packets: np.ndarray) -> None:
        types = packets["packet_type"]
        self.counts += np.bincount(types[types < len(PACKET_TYPE_NAMES)],
                                   minlength=len(PACKET_TYPE_NAMES))

    def ready(self) -> bool:
        return self.counts.sum() > 0

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(bottom=0.18)
        ax = fig.add_subplot()
        self.bars = ax.bar(PACKET_TYPE_NAMES, np.ones(len(PACKET_TYPE_NAMES)), color="tab:blue")
        self.labels = [ax.text(bar.get_x() + bar.get_width() / 2, 1.0, "", ha="center",
                               va="bottom", fontsize="small") for bar in self.bars]
        log_y(ax, nonpositive="clip")
        ax.set_ylabel("fraction of packets")
        ax.tick_params(axis="x", rotation=30)

    def refresh(self, fig: Figure) -> None:
        ax = fig.axes[0]
        fractions = self.counts / self.counts.sum()
        for bar, label, fraction, count in zip(self.bars, self.labels, fractions, self.counts,
                                               strict=True):
            bar.set_height(fraction)
            label.set_y(fraction)
            label.set_text(f"{int(count):,}" if count else "")
        shown = fractions[fractions > 0]
        ax.set_ylim(shown.min() / 3, 3.0)
        set_title(ax, f"{int(self.counts.sum()):,} packets", fontsize="medium")


#: Whether each packet_type (0-255) carries a parity bit worth checking: a table, not ``np.isin``.
_PARITY_WORD = np.isin(np.arange(256), PARITY_TYPES)


class ParityErrorFraction(TimeBinnedPlot):
    """Fraction of LArPix words (types 0-3) with a bad parity bit, per io_group vs data time.

    Bin key io_group * 2 + bad: good and bad words of a group share the same bins.
    """

    what = "Parity-error fraction"
    figsize = (10.0, 5.0)

    def count(self, packets: np.ndarray, seconds: np.ndarray) -> None:
        words = _PARITY_WORD[packets["packet_type"]]
        bad = packets["valid_parity"][words] == 0
        self.bins.add(seconds[words], packets["io_group"][words].astype(np.int64) * 2 + bad)

    def structure(self) -> object:
        return tuple(np.unique(self.bins.keys // 2))

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(left=0.08, right=0.75, bottom=0.13)
        ax = fig.add_subplot()
        self.lines = {group: ax.plot([], [], "-", lw=1)[0]
                      for group in np.unique(self.bins.keys // 2)}
        ax.set_yscale("symlog", linthresh=1e-5)
        plain_log(ax.yaxis)
        utc_time_axis(ax)
        ax.grid(True, alpha=0.3)

    def refresh(self, fig: Figure) -> None:
        ax = fig.axes[0]
        x = to_datenum(self.bins.starts)
        for group, drawn in self.lines.items():
            errors = self.bins.column(group * 2 + 1)
            words = self.bins.column(group * 2) + errors
            with np.errstate(invalid="ignore", divide="ignore"):
                drawn.set_data(x, np.where(words > 0, errors / words, np.nan))
            drawn.set_label(f"io_group {group}: {errors.sum() / words.sum():.2e} overall")
        rescale(ax)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"bad-parity fraction ({self.bins.width} s bins)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
