"""Packet rates vs data time by type, the mix of packet types, and parity errors."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import PACKET_TYPE_NAMES, PARITY_TYPES
from plotters._support import (
    BuiltinPlot,
    TimeBins,
    data_times,
    log_y,
    plain_log,
    to_datenum,
    utc_time_axis,
)


class PacketRate(BuiltinPlot):
    """Packet rate per data-time bin, one line per packet type and the total."""

    what = "Packet rate by type"

    def __init__(self) -> None:
        self.last_timestamp: dict[int, float] = {}
        self.bins = TimeBins()

    def update(self, packets: np.ndarray) -> None:
        seconds = data_times(packets, self.last_timestamp)
        self.bins.add(seconds, packets["packet_type"])

    def ready(self) -> bool:
        return len(self.bins.counts) > 0

    def draw(self, fig: Figure) -> None:
        ax = fig.add_subplot()
        x = to_datenum(self.bins.starts)
        rates = self.bins.counts / self.bins.width
        for column, code in enumerate(self.bins.keys):
            ax.plot(x, rates[:, column], ".-", ms=3, lw=1, label=PACKET_TYPE_NAMES[code])
        ax.plot(x, rates.sum(axis=1), "k-", lw=1.5, label="total")
        log_y(ax)
        ax.set_ylabel(f"rate [Hz] ({self.bins.width} s bins)")
        utc_time_axis(ax)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize="small", ncols=3)


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

    def draw(self, fig: Figure) -> None:
        ax = fig.add_subplot()
        fractions = self.counts / self.counts.sum()
        bars = ax.bar(PACKET_TYPE_NAMES, fractions, color="tab:blue")
        ax.bar_label(bars, labels=[f"{int(n):,}" for n in self.counts], fontsize="small")
        log_y(ax)
        ax.set_ylabel("fraction of packets")
        ax.tick_params(axis="x", rotation=30)
        ax.set_title(f"{int(self.counts.sum()):,} packets", fontsize="medium")


class ParityErrorFraction(BuiltinPlot):
    """Fraction of LArPix words (types 0-3) with a bad parity bit, per io_group vs data time."""

    what = "Parity-error fraction"
    figsize = (10.0, 5.0)

    def __init__(self) -> None:
        self.last_timestamp: dict[int, float] = {}
        # Key io_group * 2 + bad: good and bad words of a group share the same bins.
        self.bins = TimeBins()

    def update(self, packets: np.ndarray) -> None:
        seconds = data_times(packets, self.last_timestamp)
        words = np.isin(packets["packet_type"], PARITY_TYPES)
        bad = packets["valid_parity"][words] == 0
        self.bins.add(seconds[words], packets["io_group"][words].astype(np.int64) * 2 + bad)

    def ready(self) -> bool:
        return len(self.bins.counts) > 0

    def draw(self, fig: Figure) -> None:
        ax = fig.add_subplot()
        x = to_datenum(self.bins.starts)
        for group in np.unique(self.bins.keys // 2):
            errors = self.bins.column(group * 2 + 1)
            words = self.bins.column(group * 2) + errors
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction = np.where(words > 0, errors / words, np.nan)
            ax.plot(x, fraction, ".-", ms=3, lw=1,
                    label=f"io_group {group}: {errors.sum() / words.sum():.2e} overall")
        ax.set_yscale("symlog", linthresh=1e-5)
        ax.set_ylim(0, 1)
        plain_log(ax.yaxis)
        ax.set_ylabel(f"bad-parity fraction ({self.bins.width} s bins)")
        utc_time_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
