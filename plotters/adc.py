"""ADC values of data packets: spectra per io_group and the mean of each chip."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import DATA, tile_of
from plotters._support import BuiltinPlot, KeyedTotals, log_y

ADC_VALUES = 256


class AdcSpectrum(BuiltinPlot):
    """Counts of each ADC value (dataword 0-255) of data packets, per io_group."""

    what = "ADC spectrum"
    figsize = (9.0, 5.0)

    def __init__(self) -> None:
        self.counts: dict[int, np.ndarray] = {}

    def update(self, packets: np.ndarray) -> None:
        data = packets[packets["packet_type"] == DATA]
        for group in np.unique(data["io_group"]):
            spectrum = np.bincount(data["dataword"][data["io_group"] == group],
                                   minlength=ADC_VALUES)
            self.counts[int(group)] = self.counts.get(int(group), 0) + spectrum

    def ready(self) -> bool:
        return bool(self.counts)

    def draw(self, fig: Figure) -> None:
        ax = fig.add_subplot()
        for group, counts in sorted(self.counts.items()):
            ax.plot(np.arange(ADC_VALUES), counts, drawstyle="steps-mid", lw=1,
                    label=f"io_group {group} ({int(counts.sum()):,} packets)")
        log_y(ax)
        ax.set_xlim(0, ADC_VALUES - 1)
        ax.set_xlabel("ADC [counts]")
        ax.set_ylabel("data packets per ADC value")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")


class ChipMeanAdc(BuiltinPlot):
    """Mean ADC of every chip: one row per io_group and tile, one column per chip_id."""

    what = "Mean ADC per chip"
    figsize = (12.0, 6.0)

    def __init__(self) -> None:
        # Key (io_group * 1000 + tile) * 256 + chip_id; values: count, sum of ADC.
        self.totals = KeyedTotals(2)

    def update(self, packets: np.ndarray) -> None:
        data = packets[packets["packet_type"] == DATA]
        keys = ((data["io_group"].astype(np.int64) * 1000 + tile_of(data["io_channel"])) * 256
                + data["chip_id"])
        self.totals.add_counts(keys, data["dataword"].astype(np.float64))

    def ready(self) -> bool:
        return len(self.totals.keys) > 0

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row keys io_group*1000+tile, chip ids, mean ADC image [row, chip column])."""
        rows, row_index = np.unique(self.totals.keys // 256, return_inverse=True)
        chip_ids = self.totals.keys % 256
        chips = np.arange(chip_ids.min(), chip_ids.max() + 1)
        image = np.full((len(rows), len(chips)), np.nan)
        image[row_index, chip_ids - chips[0]] = self.totals.values[:, 1] / self.totals.values[:, 0]
        return rows, chips, image

    def draw(self, fig: Figure) -> None:
        ax = fig.add_subplot()
        rows, chips, image = self.table()
        fig.set_size_inches(12.0, 2.0 + 0.3 * len(rows))
        shown = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="viridis",
                          extent=(chips[0] - 0.5, chips[-1] + 0.5, len(rows) - 0.5, -0.5))
        ax.set_yticks(np.arange(len(rows)), [f"{r // 1000}-{r % 1000}" for r in rows])
        ax.set_ylabel("io_group-tile")
        ax.set_xlabel("chip_id")
        fig.colorbar(shown, ax=ax, label="mean ADC [counts]")
