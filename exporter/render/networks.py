"""Hydra networks: which chips of each tile talk to the DAQ over which links.

The DAQ keeps one larpix-control controller configuration per tile (2x2-crs-daq's
``cmd_interface/iog-*-tile-*-hydra-network.json``)::

    {"_config_type": "controller", "network": {
        "1": {"5": {"nodes": [{"chip_id": "ext", "miso_us": [null, null, null, 11], "root": true},
                              {"chip_id": 11, "miso_us": [null, null, 21, null]}, ...]}, ...},
        "miso_us_uart_map": [3, 0, 1, 2], ...}}

``network[io_group][io_channel]["nodes"]`` lists the chips; a node's
``miso_us`` names the chips upstream of it, whose data it passes on towards
the DAQ (the ``ext`` node is the PACMAN). Keys that are not numbers are
settings every level inherits (uart maps), not io_groups or io_channels.

The directory comes from ``--network DIR`` (the command line exports it as
``LARPIX_MONITOR_NETWORK_DIR``). A file that is not a controller configuration
is skipped with one logged line naming it and the reason.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporter.config import NETWORK_DIR_ENV

log = logging.getLogger(__name__)

#: Node key of the DAQ end (``"ext"``) of an io_channel: no chip has this id.
EXT = 256


class NetworkError(Exception):
    """A hydra-network file that cannot be used; ``str()`` is one line naming the file."""


@dataclass(frozen=True)
class TileNetwork:
    """The chips of one tile and the links between them.

    Nodes are ``io_channel * 1000 + chip_id`` (``chip_id`` = ``EXT`` for the DAQ
    end of an io_channel). Each link is (downstream node, upstream node): the
    upstream chip's data cross it on their way to the DAQ.
    """

    io_group: int
    tile: int
    chips: np.ndarray
    links: np.ndarray


def _nodes(path: Path, io_group: str, io_channel: str, spec: object) -> list[dict]:
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
        raise NetworkError(f"{path}: network {io_group}-{io_channel} has no 'nodes' list")
    return spec["nodes"]


def _node_key(io_channel: int, chip_id: object) -> int:
    return io_channel * 1000 + (chip_id if isinstance(chip_id, int) else EXT)


def read_network(path: Path) -> list[TileNetwork]:
    """The tile networks of one controller configuration file."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NetworkError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("network"), dict):
        raise NetworkError(f"{path}: not a larpix-control controller configuration "
                           "(no 'network')")
    tiles: dict[tuple[int, int], tuple[set[int], set[tuple[int, int]]]] = {}
    for io_group, channels in doc["network"].items():
        if not io_group.isdigit() or not isinstance(channels, dict):
            continue
        for io_channel, spec in channels.items():
            if not io_channel.isdigit():
                continue
            channel = int(io_channel)
            chips, links = tiles.setdefault((int(io_group), (channel - 1) // 4 + 1),
                                            (set(), set()))
            for node in _nodes(path, io_group, io_channel, spec):
                here = _node_key(channel, node.get("chip_id"))
                if here % 1000 != EXT:
                    chips.add(here)
                for upstream in node.get("miso_us") or []:
                    if upstream is not None:
                        links.add((here, _node_key(channel, upstream)))
    return [TileNetwork(group, tile, np.array(sorted(chips), dtype=np.int64),
                        np.array(sorted(links), dtype=np.int64).reshape(-1, 2))
            for (group, tile), (chips, links) in sorted(tiles.items()) if chips]


def load_networks(folder: Path) -> list[TileNetwork]:
    """Every tile network of the ``*.json`` files of ``folder``; unusable files are logged."""
    found: dict[tuple[int, int], TileNetwork] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            for network in read_network(path):
                found[(network.io_group, network.tile)] = network
        except NetworkError as error:
            log.warning("hydra network skipped: %s", error)
    return [found[key] for key in sorted(found)]


def configured_networks() -> list[TileNetwork]:
    """The networks of the directory in ``LARPIX_MONITOR_NETWORK_DIR``; none if it is unset."""
    named = os.environ.get(NETWORK_DIR_ENV)
    if not named:
        return []
    folder = Path(named)
    if not folder.is_dir():
        log.error("network plots off: %s is not a directory", folder)
        return []
    return load_networks(folder)
