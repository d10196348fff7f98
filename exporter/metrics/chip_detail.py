"""Config packets per chip and the clock source per io_group: the few rows they come from
are counted apart from the block pass (config and sync rows are rare)."""

from __future__ import annotations

import numpy as np

from exporter.metrics.chips import grow_axis
from exporter.metrics.clock import N_GROUPS
from exporter.packets import CONFIG_READ

#: (op, direction) of the config columns: column = 2 * (type is read) + (upstream).
CONFIG_COLUMNS = (("write", "downstream"), ("write", "upstream"),
                  ("read", "downstream"), ("read", "upstream"))


class ChipDetail:
    """Config packets by chip slot and (op, direction); the latest clock source per io_group."""

    def __init__(self) -> None:
        self.config = np.zeros((1, len(CONFIG_COLUMNS)), np.int64)
        self.clock_source = np.zeros(N_GROUPS, np.int64)
        self.has_clock_source = np.zeros(N_GROUPS, bool)

    def grow(self, capacity: int) -> None:
        self.config = grow_axis(self.config, 0, capacity)

    def count_config(self, slot: np.ndarray, packet_type: np.ndarray,
                     downstream_marker: np.ndarray) -> None:
        """Config rows (types 2 and 3): ``downstream_marker`` 1 is downstream."""
        column = 2 * (packet_type == CONFIG_READ) + (downstream_marker != 1)
        np.add.at(self.config.reshape(-1), slot.astype(np.int64) * len(CONFIG_COLUMNS)
                  + column, 1)

    def note_syncs(self, group: np.ndarray, dataword: np.ndarray) -> None:
        """Sync rows in file order: the last of each io_group gives its clock source."""
        if len(group):
            last = len(group) - 1 - np.unique(group[::-1], return_index=True)[1]
            self.clock_source[group[last]] = dataword[last]
            self.has_clock_source[group[last]] = True
