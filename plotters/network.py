"""The hydra network of each tile, with each chip's data rate and parity errors on its links.

Drawn when ``--network DIR`` names the DAQ's hydra-network files (see
``exporter.render.networks``). Chips sit on the tile's chip grid (chip_id
``10 r + c + 1`` at column ``c``, row ``r``: neighbours differ by 1 and 10);
a chip's colour is its data rate, and the link that carries its data towards
the DAQ is coloured by its parity errors. A chip that should talk but is grey
sent nothing; a red link is where words get corrupted.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from exporter.packets import DATA
from exporter.render.networks import EXT, TileNetwork, configured_networks
from plotters._accumulators import KeyedTotals
from plotters._axes import plain_log_colorbar, set_title, tile_panels
from plotters._bases import BuiltinPlot
from plotters._packets import timestamp_spans

#: Packet types that carry a parity bit worth checking (data, test, config write/read).
LARPIX_WORDS = 3
GRID = 10
#: Chips that sent nothing (rate NaN) are drawn grey.
SILENT_GREY = colormaps["viridis"].with_extremes(bad="lightgrey")


def chip_positions(nodes: np.ndarray) -> np.ndarray:
    """(column, row) of nodes ``io_channel * 1000 + chip_id`` on the chip grid.

    The DAQ end of an io_channel (``EXT``) sits one row below the chip it feeds.
    """
    chip = nodes % 1000
    return np.column_stack([(chip - 1) % GRID, (chip - 1) // GRID]).astype(float)


class NetworkMap(BuiltinPlot):
    """One panel per tile of the hydra networks: chips by data rate, links by parity errors."""

    what = "Hydra network: chip data rate, parity errors per link"
    columns = 4

    def __init__(self) -> None:
        self.networks: list[TileNetwork] = configured_networks()
        # Key (io_group << 16) | (io_channel << 8) | chip_id: data packets, parity errors.
        self.totals = KeyedTotals(2)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def update(self, packets: np.ndarray) -> None:
        if not self.networks:
            return
        for group, (first, last) in timestamp_spans(packets).items():
            self.first[group] = min(self.first.get(group, np.inf), first)
            self.last[group] = max(self.last.get(group, -np.inf), last)
        kinds = packets["packet_type"]
        words = kinds <= LARPIX_WORDS
        keys = ((packets["io_group"][words].astype(np.int64) << 16)
                | (packets["io_channel"][words].astype(np.int64) << 8)
                | packets["chip_id"][words])
        self.totals.add(keys, (kinds[words] == DATA).astype(np.float64),
                        (packets["valid_parity"][words] == 0).astype(np.float64))

    def livetime(self, io_group: int) -> float:
        """Seconds of the io_group's timestamps (of all timestamps if it has none of its own)."""
        if io_group in self.first:
            return self.last[io_group] - self.first[io_group] + 1.0
        if not self.first:
            return np.nan
        return max(self.last.values()) - min(self.first.values()) + 1.0

    def shown(self) -> list[TileNetwork]:
        """The tiles of the io_groups this file has LArPix words from."""
        groups = set((self.totals.keys >> 16).tolist())
        return [network for network in self.networks if network.io_group in groups]

    def ready(self) -> bool:
        return bool(self.shown())

    def structure(self) -> object:
        return tuple((network.io_group, network.tile) for network in self.shown())

    def chip_values(self, network: TileNetwork, nodes: np.ndarray) -> tuple[np.ndarray, ...]:
        """Data rate (Hz) and parity errors of each node of ``network`` (zero for ``EXT``)."""
        keys = (network.io_group << 16) | ((nodes // 1000) << 8) | (nodes % 1000)
        values = np.zeros((len(nodes), 2))
        if len(self.totals.keys):
            index = np.minimum(np.searchsorted(self.totals.keys, keys), len(self.totals.keys) - 1)
            found = (self.totals.keys[index] == keys) & (nodes % 1000 != EXT)
            values[found] = self.totals.values[index[found]]
        return values[:, 0] / self.livetime(network.io_group), values[:, 1]

    def build(self, fig: Figure) -> None:
        self.tiles = self.shown()
        count = len(self.tiles)
        columns = min(self.columns, count)
        rows = -(-count // columns)
        height = 3.6 * rows + 0.9
        fig.set_size_inches(3.6 * columns + 1.6, height)
        fig.subplots_adjust(left=0.02, right=0.82, bottom=0.02, top=1 - 0.7 / height,
                            wspace=0.08, hspace=0.2)
        axes = tile_panels(fig, rows, columns, count)
        self.points, self.wires = [], []
        for ax, network in zip(axes, self.tiles, strict=False):
            positions = chip_positions(network.chips)
            points = ax.scatter(positions[:, 0], positions[:, 1], c=np.zeros(len(positions)),
                                s=60, marker="s", norm=LogNorm(0.1, 10.0), cmap=SILENT_GREY,
                                zorder=2, plotnonfinite=True)
            ends = network.links.ravel()
            segments = chip_positions(ends).reshape(-1, 2, 2)
            ext = (network.links[:, 0] % 1000) == EXT
            segments[ext, 0] = segments[ext, 1] - (0.0, 0.8)  # the PACMAN below its root chip
            wires = LineCollection(segments, cmap="YlOrRd", norm=Normalize(0.0, 1.0),
                                   linewidths=2.5, zorder=1)
            ax.add_collection(wires)
            for chip, (x, y) in zip(network.chips % 1000, positions, strict=True):
                ax.text(x, y, str(chip), fontsize=4, ha="center", va="center", zorder=3)
            ax.set_xlim(-0.8, GRID - 0.2)
            ax.set_ylim(positions[:, 1].min() - 1.2, positions[:, 1].max() + 0.8)
            self.points.append(points)
            self.wires.append(wires)
        plain_log_colorbar(fig.colorbar(self.points[0], label="chip data rate [Hz]",
                                        cax=fig.add_axes((0.85, 0.1, 0.02, 0.8))))
        fig.colorbar(self.wires[0], label="parity errors on the chip's link",
                     cax=fig.add_axes((0.93, 0.1, 0.02, 0.8)))

    def refresh(self, fig: Figure) -> None:
        rates_shown, errors_shown = [], []
        for network, points, wires in zip(self.tiles, self.points, self.wires, strict=True):
            rate, _ = self.chip_values(network, network.chips)
            _, errors = self.chip_values(network, network.links[:, 1])
            points.set_array(np.where(rate > 0, rate, np.nan))
            wires.set_array(errors)
            rates_shown.append(rate[rate > 0])
            errors_shown.append(errors)
            set_title(
                points.axes, f"io_group {network.io_group} tile {network.tile}: "
                f"{np.count_nonzero(rate)}/{len(rate)} chips, {int(errors.sum()):,} parity errors",
                fontsize="small")
        rates = np.concatenate(rates_shown)
        errors = np.concatenate(errors_shown)
        for points, wires in zip(self.points, self.wires, strict=False):
            if len(rates):
                points.set_clim(rates.min(), max(rates.max(), rates.min() * 1.01))
            wires.set_clim(0.0, max(float(errors.max(initial=0.0)), 1.0))
