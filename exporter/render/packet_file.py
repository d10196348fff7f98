"""The ``fh`` a plugin is called with: the new packets, dressed as the seed's h5py file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class PacketFile(Mapping):
    """What a plugin gets as ``fh``: ``fh['packets']`` is a structured array of PACKET_DTYPE.

    Stands in for the seed's temporary h5py file: ``fh.keys()``, ``'packets' in fh``,
    ``fh.filename`` and ``fh['packets'][mask]['field']`` all work as they did.
    """

    def __init__(self, filename: str, packets: np.ndarray, shared: dict | None = None) -> None:
        self.filename = filename
        #: Given to every built-in plot of one render: sums several plots need are counted once.
        self.shared = {} if shared is None else shared
        self._datasets = {"packets": packets}

    def __getitem__(self, key: str) -> np.ndarray:
        return self._datasets[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)
