"""The simulated detector as the DAQ and larpix-geometry describe a real one.

* hydra networks: one larpix-control controller configuration per tile, as
  2x2-crs-daq keeps them (``iog-G-pacman-tile-T-hydra-network.json``); each
  io_channel's chips (see ``detector.channel_population``) hang from the
  PACMAN in a tree of grid neighbours (chip_id +-1, +-10), found breadth first;
* a multi-tile layout made from those networks by larpix-geometry's own
  ``multi_tile_layout`` generator, so the anode map knows where each tile sits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import deque
from pathlib import Path

from exporter.simulate.detector import CHIPS, IO_CHANNELS_PER_TILE, TILES

#: miso_us slot of an upstream neighbour, by chip_id step (any fixed choice loads).
UART_OF_STEP = {-10: 0, 1: 1, 10: 2, -1: 3}
#: Pixel pitch of layout 2.4.0 (mm), which larpix-geometry's generator needs told.
PIXEL_PITCH = 4.434


def io_channel_chips(k: int) -> list[int]:
    """The chips the simulator reads out through a tile's ``k``-th io_channel (0-3)."""
    return [int(c) for c in CHIPS
            if (c - CHIPS[0]) * IO_CHANNELS_PER_TILE // len(CHIPS) == k]


def chip_tree(chips: list[int]) -> list[dict]:
    """Hydra nodes: the PACMAN (``ext``) feeds the first chip; each chip the neighbours it found."""
    members = set(chips)
    upstream: dict[int, list[int | None]] = {c: [None] * 4 for c in chips}
    seen, queue = {chips[0]}, deque([chips[0]])
    while queue:
        here = queue.popleft()
        for step, uart in UART_OF_STEP.items():
            there = here + step
            same_row = abs(step) != 1 or (there - 1) // 10 == (here - 1) // 10
            if there in members and there not in seen and same_row:
                seen.add(there)
                upstream[here][uart] = there
                queue.append(there)
    ext = {"chip_id": "ext", "miso_us": [None, None, None, chips[0]], "root": True}
    return [ext] + [{"chip_id": c, "miso_us": upstream[c]} if any(upstream[c]) else
                    {"chip_id": c} for c in chips]


def tile_network(io_group: int, tile: int) -> dict:
    """The controller configuration of one simulated tile."""
    first = (tile - 1) * IO_CHANNELS_PER_TILE + 1
    return {"_config_type": "controller", "name": f"iog-{io_group}-pacman-tile-{tile}",
            "asic_version": 2, "layout": "2.4.0",
            "network": {str(io_group): {str(first + k): {"nodes": chip_tree(io_channel_chips(k))}
                                        for k in range(IO_CHANNELS_PER_TILE)},
                        "miso_us_uart_map": [3, 0, 1, 2], "miso_ds_uart_map": [1, 2, 3, 0],
                        "mosi_uart_map": [2, 3, 0, 1]}}


def write_networks(folder: Path, io_groups: tuple[int, ...]) -> list[Path]:
    """One hydra-network file per tile of ``io_groups``, in tile order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for group in io_groups:
        for tile in range(1, TILES + 1):
            path = folder / f"iog-{group}-pacman-tile-{tile}-hydra-network.json"
            path.write_text(json.dumps(tile_network(group, tile), indent=1))
            paths.append(path)
    return paths


def write_multi_tile_layout(tile_layout: Path, networks: list[Path], folder: Path) -> Path:
    """larpix-geometry's multi-tile layout of these networks (tile ids 1.. in their order).

    The generator writes into its working directory, so it runs in a child process there.
    """
    listing = folder / "networks.txt"
    listing.write_text("\n".join(str(p.resolve()) for p in networks))
    code = ("import sys; from larpixgeometry.layouts.multi_tile_layout import generate_layout; "
            "generate_layout(sys.argv[1], sys.argv[2], pixel_pitch=float(sys.argv[3]))")
    done = subprocess.run([sys.executable, "-c", code, str(tile_layout.resolve()), str(listing),
                           str(PIXEL_PITCH)], cwd=folder, capture_output=True, text=True,
                          check=False)
    made = sorted(folder.glob("multi_tile_layout-*.yaml"))
    if done.returncode != 0 or not made:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{tile_layout}: multi-tile layout generator failed: {reason}")
    return made[-1]
