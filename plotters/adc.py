"""ADC values of data packets: spectra per io_group and the mean of each chip."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import DATA, tile_of
from plotters._accumulators import KeyedTotals
from plotters._axes import log_y, one_panel, rescale
from plotters._bases import BuiltinPlot, PerGroupPlot

ADC_VALUES = 256


class AdcSpectrum(PerGroupPlot):
    """Counts of each ADC value (dataword 0-255) of data packets, per io_group."""

    what = "ADC spectrum"
    figsize = (9.0, 5.0)

    def __init__(self) -> None:
        self.counts: dict[int, np.ndarray] = {}

    def update(self, packets: np.ndarray) -> None:
        data = packets["packet_type"] == DATA
        groups = packets["io_group"][data]
        present = np.flatnonzero(np.bincount(groups, minlength=256))
        index = np.zeros(256, dtype=np.int64)
        index[present] = np.arange(len(present))
        spectra = np.bincount(index[groups] * ADC_VALUES + packets["dataword"][data],
                              minlength=len(present) * ADC_VALUES).reshape(-1, ADC_VALUES)
        for group, spectrum in zip(present, spectra, strict=True):
            self.counts[int(group)] = self.counts.get(int(group), 0) + spectrum

    def groups(self) -> dict[int, np.ndarray]:
        return self.counts

    def build(self, fig: Figure) -> None:
        ax = one_panel(fig)
        self.lines = {group: ax.plot(np.arange(ADC_VALUES), np.zeros(ADC_VALUES),
                                     drawstyle="steps-mid", lw=1)[0]
                      for group in sorted(self.counts)}
        log_y(ax)
        ax.set_xlim(0, ADC_VALUES - 1)
        ax.set_xlabel("ADC [counts]")
        ax.set_ylabel("data packets per ADC value")
        ax.grid(True, alpha=0.3)

    def refresh(self, fig: Figure) -> None:
        ax = fig.axes[0]
        for group, drawn in self.lines.items():
            drawn.set_ydata(self.counts[group])
            drawn.set_label(f"io_group {group} ({int(self.counts[group].sum()):,} packets)")
        rescale(ax)
        ax.set_xlim(0, ADC_VALUES - 1)
        ax.legend(fontsize="small")


class ChipMeanAdc(BuiltinPlot):
    """Mean ADC of every chip: one row per io_group and tile, one column per chip_id."""

    what = "Mean ADC per chip"

    def __init__(self) -> None:
        # Key (io_group * 1000 + tile) * 256 + chip_id; values: count, sum of ADC.
        self.totals = KeyedTotals(2)

    def update(self, packets: np.ndarray) -> None:
        keys, hits, adc, _ = self.batch.channel_sums()
        chips = ((keys >> 24) * 1000 + tile_of((keys >> 16) & 255)) * 256 + ((keys >> 8) & 255)
        self.totals.add(chips, hits, adc)

    def ready(self) -> bool:
        return len(self.totals.keys) > 0

    def structure(self) -> object:
        chips = self.totals.keys % 256
        return tuple(np.unique(self.totals.keys // 256)), int(chips.min()), int(chips.max())

    def table(self) -> np.ndarray:
        """Mean ADC image, [row of (io_group, tile), chip_id - first chip_id]."""
        rows, row_index = np.unique(self.totals.keys // 256, return_inverse=True)
        chip_ids = self.totals.keys % 256
        image = np.full((len(rows), int(chip_ids.max() - chip_ids.min()) + 1), np.nan)
        image[row_index, chip_ids - chip_ids.min()] = (self.totals.values[:, 1]
                                                       / self.totals.values[:, 0])
        return image

    def build(self, fig: Figure) -> None:
        rows, first, last = self.structure()
        height = 1.6 + 0.3 * len(rows)
        fig.set_size_inches(12.0, height)
        fig.subplots_adjust(left=0.07, right=1.0, bottom=0.6 / height, top=1 - 0.5 / height)
        ax = fig.add_subplot()
        self.image = ax.imshow(np.zeros((len(rows), last - first + 1)), aspect="auto",
                               interpolation="nearest", cmap="viridis",
                               extent=(first - 0.5, last + 0.5, len(rows) - 0.5, -0.5))
        ax.set_yticks(np.arange(len(rows)), [f"{r // 1000}-{r % 1000}" for r in rows])
        ax.set_ylabel("io_group-tile")
        ax.set_xlabel("chip_id")
        fig.colorbar(self.image, ax=ax, label="mean ADC [counts]", pad=0.01)

    def refresh(self, fig: Figure) -> None:
        image = self.table()
        self.image.set_data(image)
        self.image.set_clim(np.nanmin(image), np.nanmax(image))
