"""The simulated module's hydra networks (read by larpix-control's own Controller) and its
multi-tile layout (made by larpix-geometry's generator): what the demo's maps draw from."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import yaml
from larpix import Controller
from support.layouts import default_layout_in

from exporter.render import PacketFile, discover_plots
from exporter.render.geometry import layout_path, load_geometry
from exporter.render.networks import load_networks
from exporter.simulate import simulate_file
from exporter.simulate.detector import SimConfig, channel_population
from exporter.simulate.network import write_multi_tile_layout, write_networks
from exporter.source.reader import FileReader

IO_GROUPS = (1, 2)


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector")
    with default_layout_in(tmp_path_factory.mktemp("cache")):
        networks = write_networks(folder / "networks", IO_GROUPS)
        layout = write_multi_tile_layout(layout_path(), networks, folder)
    return networks, layout


def test_every_simulated_chip_hangs_from_its_io_channels_pacman(described):
    networks, _ = described
    assert len(networks) == 16
    population = channel_population(SimConfig(), 1)
    simulated = {(int(c), int(k)) for c, k in zip(population.io_channel, population.chip_id,
                                                  strict=True)}
    found = set()
    for path in networks:
        controller = Controller()
        controller.load_network(str(path))
        for group, channels in controller.network.items():
            for io_channel, graphs in channels.items():
                tree = graphs["miso_us"]
                chips = {c for c in tree.nodes() if isinstance(c, int)}
                assert nx.is_arborescence(tree) and set(nx.descendants(tree, "ext")) == chips
                assert all(abs(a - b) in (1, 10) for a, b in tree.edges() if a != "ext")
                if group == 1:
                    found |= {(io_channel, c) for c in chips}
    assert found == simulated


def test_the_layout_puts_every_simulated_io_channel_on_a_tile(described):
    networks, layout = described
    geometry = load_geometry(layout)
    assert geometry.anode is not None
    for group in IO_GROUPS:
        tiles = geometry.anode.tile_of_io[group, 1:33]
        assert (tiles > 0).all()
        assert len(set(tiles.tolist())) == 8  # four io_channels per tile
    assert {t.io_group for t in load_networks(networks[0].parent)} == set(IO_GROUPS)


def test_anode_map_of_the_demo_layout_leaves_out_only_unconnected_channels(
        described, tmp_path, monkeypatch):
    _, layout = described
    monkeypatch.setenv("PIXEL_GEOMETRY_PATH", str(layout))
    path = tmp_path / "anode.h5"
    simulate_file(path, "packet", seconds=6, seed=3, io_groups=IO_GROUPS)
    packets = np.concatenate([chunk.packets for chunk in FileReader(path).read_new()])
    fig = discover_plots([]).plots["AnodeMap"]()(str(path), PacketFile(str(path), packets))
    assert fig is not None
    cells = yaml.safe_load(layout.read_text())["chip_channel_to_position"]
    data = packets[packets["packet_type"] == 0]
    for ax, group in zip([a for a in fig.axes if a.get_title().startswith("io_group")],
                         IO_GROUPS, strict=True):
        mine = data[data["io_group"] == group]
        key = mine["chip_id"].astype(int) * 1000 + mine["channel_id"].astype(int)
        unconnected = int(np.count_nonzero(~np.isin(key, list(cells))))
        assert ax.get_title() == f"io_group {group}: {unconnected:,} hits not in the layout"
