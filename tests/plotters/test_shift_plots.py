"""Pedestal and noise maps, and the hydra-network plot: the numbers on their artists are the
simulated file's, recounted with plain numpy, and the network's links are larpix-control's own
reading of a hydra-network file written here in its format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Controller
from matplotlib.collections import LineCollection, PathCollection
from PIL import Image
from support.layouts import default_layout_in
from support.plots import draw

from exporter.render.figures import save_figure
from exporter.render.geometry import shared_geometry
from exporter.simulate import simulate_file
from exporter.simulate.detector import CHIPS
from exporter.source.reader import FileReader

SECONDS = 12
SEED = 5
#: io_group 1, tile 2 (io_channels 5-8) and io_group 2, tile 1 (io_channels 1-4).
NETWORK_TILES = ((1, 2), (2, 1))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "run_net.h5"
    simulate_file(path, "packet", seconds=SECONDS, seed=SEED, bad_parity_fraction=0.01)
    with h5py.File(path, "r") as f:
        rows = f["packets"][:]
    packets = np.concatenate([chunk.packets for chunk in FileReader(path).read_new()])
    return {"path": path, "rows": rows, "packets": packets}


@pytest.fixture(scope="module")
def geometry(tmp_path_factory):
    with default_layout_in(tmp_path_factory.mktemp("cache")):
        found = shared_geometry()
        assert found is not None
        yield found


def live_seconds(rows: np.ndarray, group: int) -> float:
    stamps = rows["timestamp"][(rows["packet_type"] == 4) & (rows["io_group"] == group)]
    return float(stamps.max() - stamps.min() + 1)


def image_of(ax) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(ax.images[0].get_array(), float), np.nan)


# -- pedestal and noise maps -------------------------------------------------------------------

def channel_reference(rows: np.ndarray, group: int, tile: int, quantity: str) -> np.ndarray:
    """ADC mean or standard deviation per [chip, channel], with plain numpy, NaN where silent."""
    data = rows[(rows["packet_type"] == 0) & (rows["io_group"] == group)
                & ((rows["io_channel"].astype(int) - 1) // 4 + 1 == tile)]
    out = np.full((256, 64), np.nan)
    key = data["chip_id"].astype(int) * 64 + data["channel_id"].astype(int)
    adc = data["dataword"].astype(float)
    for k in np.unique(key):
        values = adc[key == k]
        out[k // 64, k % 64] = values.mean() if quantity == "mean" else values.std()
    return out


@pytest.mark.parametrize(("name", "quantity"), [("PedestalMaps", "mean"), ("NoiseMaps", "std")])
def test_pedestal_and_noise_maps_are_each_pixels_adc_mean_and_rms(
        name, quantity, sim, geometry, tmp_path):
    fig = draw(name, sim["path"], sim["packets"])
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [f"io_group {g} tile {t}" for g in (1, 2)
                                                 for t in range(1, 9)]
    for ax in (panels[1], panels[14]):
        group, tile = int(ax.get_title().split()[1]), int(ax.get_title().split()[3])
        expected = geometry.tile.grid(channel_reference(sim["rows"], group, tile, quantity))
        np.testing.assert_allclose(image_of(ax), expected, rtol=1e-9, atol=1e-9)
    save_figure(fig, tmp_path / f"{name}.png", ".png")
    with Image.open(tmp_path / f"{name}.png") as image:
        assert np.asarray(image.convert("L"), dtype=float).var() > 100
    halves = draw(name, sim["path"], sim["packets"][:len(sim["packets"]) // 3],
                  sim["packets"][len(sim["packets"]) // 3:])
    for whole, part in zip(panels, [ax for ax in halves.axes if ax.images], strict=True):
        np.testing.assert_allclose(image_of(part), image_of(whole), rtol=1e-9, atol=1e-9)


# -- the hydra network -------------------------------------------------------------------------

def hydra_network(io_group: int, tile: int) -> dict:
    """A controller configuration in larpix-control's format for one tile: per io_channel, the
    simulator's chips of that io_channel in a chain from the PACMAN, with a side branch."""
    channels = {}
    for k in range(4):
        io_channel = 4 * (tile - 1) + 1 + k
        chips = [int(c) for c in CHIPS if (c - CHIPS[0]) * 4 // len(CHIPS) == k]
        nodes = [{"chip_id": "ext", "miso_us": [None, None, None, chips[0]], "root": True}]
        chain, branch = chips[:-3], chips[-3:]
        for here, upstream in zip(chain, chain[1:] + [None], strict=True):
            node = {"chip_id": here, "miso_us": [None, None, upstream, None]}
            if here == chain[2]:
                node["miso_us"][0] = branch[0]
            nodes.append(node)
        nodes += [{"chip_id": branch[0], "miso_us": [branch[1], None, None, branch[2]]},
                  {"chip_id": branch[1]}, {"chip_id": branch[2]}]
        channels[str(io_channel)] = {"nodes": nodes}
    return {"_config_type": "controller", "name": f"iog-{io_group}-tile-{tile}",
            "asic_version": 2, "layout": "2.4.0",
            "network": {str(io_group): channels, "miso_us_uart_map": [3, 0, 1, 2],
                        "miso_ds_uart_map": [1, 2, 3, 0], "mosi_uart_map": [2, 3, 0, 1]}}


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("networks")
    for group, tile in NETWORK_TILES:
        path = folder / f"iog-{group}-pacman-tile-{tile}-hydra-network.json"
        path.write_text(json.dumps(hydra_network(group, tile), indent=4))
    (folder / "asic-config-1-5-11.json").write_text(json.dumps({"_config_type": "chip"}))
    (folder / "broken.json").write_text("{not json")
    return folder


def controller_links(folder: Path, group: int, tile: int) -> tuple[set, set]:
    """Chips and miso_us links of a tile as larpix-control's own Controller reads the file."""
    controller = Controller()
    controller.load_network(str(folder / f"iog-{group}-pacman-tile-{tile}-hydra-network.json"))
    chips, links = set(), set()
    for io_channel, graphs in controller.network[group].items():
        chips |= {(io_channel, c) for c in graphs["miso_us"].nodes() if isinstance(c, int)}
        links |= {(io_channel, a, b) for a, b in graphs["miso_us"].edges()}
    return chips, links


def grid_position(chip: object, upstream: int) -> tuple[float, float]:
    if chip == "ext":  # drawn one row below the chip it feeds
        x, y = grid_position(upstream, upstream)
        return x, y - 0.8
    return float((chip - 1) % 10), float((chip - 1) // 10)


def chip_counts(rows: np.ndarray, group: int) -> tuple[dict, dict]:
    """Data packets and parity errors per (io_channel, chip_id), counted with plain numpy."""
    words = rows[(rows["io_group"] == group) & (rows["packet_type"] <= 3)]
    key = words["io_channel"].astype(int) * 1000 + words["chip_id"].astype(int)
    data = np.bincount(key[words["packet_type"] == 0], minlength=300_000)
    errors = np.bincount(key[words["valid_parity"] == 0], minlength=300_000)
    return ({k: int(data[k]) for k in np.flatnonzero(data)},
            {k: int(errors[k]) for k in np.flatnonzero(errors)})


@pytest.fixture(scope="module")
def network_figure(sim, network_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LARPIX_MONITOR_NETWORK_DIR", str(network_dir))
        return draw("NetworkMap", sim["path"], sim["packets"])


def test_network_plot_shows_each_chips_rate_and_its_links_parity_errors(
        sim, network_dir, network_figure, tmp_path):
    fig = network_figure
    panels = [ax for ax in fig.axes if ax.get_title().startswith("io_group")]
    assert len(panels) == len(NETWORK_TILES)
    for ax, (group, tile) in zip(panels, NETWORK_TILES, strict=True):
        chips, links = controller_links(network_dir, group, tile)
        data, errors = chip_counts(sim["rows"], group)
        live = live_seconds(sim["rows"], group)
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        (wires,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        # Chips: where the grid puts them, coloured by their data rate.
        offsets = [tuple(p) for p in np.asarray(points.get_offsets(), float)]
        drawn = dict(zip(offsets, np.ma.filled(points.get_array(), np.nan).tolist(),
                         strict=True))
        assert len(drawn) == len(chips) == 100
        for io_channel, chip in chips:
            rate = data.get(io_channel * 1000 + chip, 0) / live
            value = drawn[grid_position(chip, chip)]
            assert (np.isnan(value) and rate == 0) or value == pytest.approx(rate, rel=1e-12)
        # Links: larpix-control's miso_us edges, coloured by the upstream chip's parity errors.
        segments = {tuple(map(tuple, np.round(s, 9))) for s in wires.get_segments()}
        expected = {(grid_position(a, b), grid_position(b, b)) for _, a, b in links}
        assert segments == {tuple(map(tuple, np.round(s, 9))) for s in expected}
        by_segment = {tuple(map(tuple, np.round(s, 9))): v
                      for s, v in zip(wires.get_segments(), wires.get_array(), strict=True)}
        for io_channel, a, b in links:
            key = tuple(map(tuple, np.round((grid_position(a, b), grid_position(b, b)), 9)))
            assert by_segment[key] == errors.get(io_channel * 1000 + b, 0)
        total = sum(errors.get(c * 1000 + chip, 0) for c, chip in chips)
        assert total > 0
        assert ax.get_title() == (
            f"io_group {group} tile {tile}: "
            f"{sum(1 for c, chip in chips if data.get(c * 1000 + chip))}/100 chips, "
            f"{total:,} parity errors")
    save_figure(fig, tmp_path / "NetworkMap.png", ".png")
    with Image.open(tmp_path / "NetworkMap.png") as image:
        assert np.asarray(image.convert("L"), dtype=float).var() > 100


def test_network_plot_of_two_halves_is_the_whole(sim, network_dir, network_figure):
    whole = network_figure
    cut = len(sim["packets"]) // 2 + 5
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LARPIX_MONITOR_NETWORK_DIR", str(network_dir))
        halves = draw("NetworkMap", sim["path"], sim["packets"][:cut], sim["packets"][cut:])
    for a, b in zip(whole.axes, halves.axes, strict=True):
        for x, y in zip(a.collections, b.collections, strict=True):
            np.testing.assert_array_equal(np.ma.filled(x.get_array(), -1),
                                          np.ma.filled(y.get_array(), -1))


def test_unusable_network_files_are_named_and_skipped(network_dir, caplog):
    from exporter.render.networks import load_networks

    with caplog.at_level(logging.WARNING, logger="exporter.render.networks"):
        found = load_networks(network_dir)
    assert [(n.io_group, n.tile) for n in found] == list(NETWORK_TILES)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert any("broken.json: cannot read JSON" in m for m in messages)
    assert any("asic-config-1-5-11.json: not a larpix-control controller configuration" in m
               for m in messages)


def test_without_networks_the_plot_draws_nothing(sim, monkeypatch):
    monkeypatch.delenv("LARPIX_MONITOR_NETWORK_DIR", raising=False)
    assert draw("NetworkMap", sim["path"], sim["packets"]) is None


def test_once_network_flag_draws_the_network_plot(sim, network_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "once", str(sim["path"]), "-o", str(tmp_path),
         "--plots", "NetworkMap", "--network", str(network_dir)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    png = tmp_path / "run_net_dqm" / "run_net_NetworkMap.png"
    with Image.open(png) as image:
        assert np.asarray(image.convert("L"), dtype=float).var() > 100
    missing = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "once", str(sim["path"]), "-o", str(tmp_path),
         "--network", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nowhere: not a directory" in missing.stderr
