"""Pixel layouts for tests, made by larpix-geometry itself."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml


@contextmanager
def default_layout_in(cache: Path) -> Iterator[None]:
    """No layout configured: the monitor generates its default into ``cache``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.delenv("PIXEL_GEOMETRY_PATH", raising=False)
        mp.chdir(cache)
        yield


def make_multi_tile_layout(tile_layout: Path, folder: Path, n_chips: int = 20) -> Path:
    """A multi-tile layout written by larpix-geometry's own generator: three tiles,
    io_group 1 io_channels 1-4 and 5-8, io_group 2 io_channels 1-4.

    The generator reads the tile layout with pure-Python YAML, so it gets the
    first ``n_chips`` chips of ``tile_layout`` only.
    """
    from larpixgeometry.layouts.multi_tile_layout import generate_layout

    doc = yaml.load(tile_layout.read_text(), Loader=yaml.CSafeLoader)
    doc["chips"] = doc["chips"][:n_chips]
    kept = {p for _, channels in doc["chips"] for p in channels if p is not None}
    doc["pixels"] = [p for p in doc["pixels"] if p[0] in kept]
    small = folder / "layout-small.yaml"
    small.write_text(yaml.dump(doc, Dumper=yaml.CSafeDumper))
    chips = [chip for chip, _ in doc["chips"]]
    per_channel = n_chips // 4
    networks = []
    for index, (group, first) in enumerate([(1, 1), (1, 5), (2, 1)]):
        network = {"network": {str(group): {str(first + k): {
            "nodes": [{"chip_id": c} for c in chips[per_channel * k:per_channel * (k + 1)]]}
            for k in range(4)}}}
        networks.append(folder / f"network-{index}.json")
        networks[-1].write_text(json.dumps(network))
    (folder / "networks.txt").write_text("\n".join(str(p) for p in networks))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        generate_layout(str(small), str(folder / "networks.txt"), pixel_pitch=4.434)
    finally:
        os.chdir(cwd)
    (path,) = folder.glob("multi_tile_layout-*.yaml")
    return path
