"""Memory stays flat: thousands of plot updates, and idle files give their figures back."""

from __future__ import annotations

import ctypes
import gc

import matplotlib.pyplot as plt
import numpy as np
import psutil
import pytest
from matplotlib.figure import Figure
from support.paths import SEED_PLUGINS

from exporter.render import PacketFile, PlotRenderer, discover_plots
from exporter.render.figures import save_figure
from exporter.simulate import simulate_file
from exporter.source.reader import FileReader

UPDATES = 2_000
PACKETS_PER_UPDATE = 60


LIBC = ctypes.CDLL("libc.so.6")


def rss_mb() -> float:
    """Resident memory after a collection, with freed heap pages handed back to the OS.

    Without ``malloc_trim`` a thread's malloc arena keeps pages it no longer uses,
    and RSS would jump by whatever the allocator happened to hold on to.
    """
    gc.collect()
    LIBC.malloc_trim(0)
    return psutil.Process().memory_info().rss / 1e6


def live_figures() -> int:
    gc.collect()
    return sum(isinstance(o, Figure) for o in gc.get_objects())


@pytest.fixture(scope="module")
def packets(tmp_path_factory):
    path = tmp_path_factory.mktemp("mem") / "run_mem.h5"
    simulate_file(path, "packet", n_packets=UPDATES * PACKETS_PER_UPDATE // 20, seed=5)
    return path, np.concatenate([c.packets for c in FileReader(path).read_new()])


@pytest.fixture
def default_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PIXEL_GEOMETRY_PATH", raising=False)
    monkeypatch.chdir(tmp_path)


def test_two_thousand_updates_of_all_plots_keep_memory_flat(packets, default_layout, tmp_path):
    """2,000 plugin calls: rounds over every built-in plot, each with a few new packets."""
    path, rows = packets
    catalog = discover_plots([])
    plots = {name: cls() for name, cls in catalog.plots.items()}
    figures: dict[str, Figure | None] = dict.fromkeys(plots)
    rounds = -(-UPDATES // len(plots))
    # A first pass over the file fills the plots' accumulators (every channel and time bin
    # the data has); the 2,000 updates after it must not grow memory.
    warm_up = -(-len(rows) // PACKETS_PER_UPDATE)
    figures_before = live_figures()
    start = 0
    baseline = None
    for round_index in range(warm_up + rounds):
        part = rows[start:start + PACKETS_PER_UPDATE]
        start = (start + PACKETS_PER_UPDATE) % (len(rows) - PACKETS_PER_UPDATE)
        for name, plot in plots.items():
            figures[name] = plot(str(path), PacketFile(str(path), part), figures[name])
        if round_index in (warm_up, warm_up + rounds - 1):  # draw all: Agg buffers, text caches
            for name, fig in figures.items():
                if fig is not None:
                    save_figure(fig, tmp_path / f"{name}.png", ".png")
        if round_index == warm_up:
            baseline = rss_mb()
    made = sum(fig is not None for fig in figures.values())
    assert rounds * len(plots) >= UPDATES
    assert made >= len(plots) - 2  # AnodeMap needs a multi-tile layout, NetworkMap networks
    assert live_figures() - figures_before == made
    assert rss_mb() - baseline < 30


def test_idle_files_give_back_their_figures(packets, default_layout, tmp_path):
    path, rows = packets
    catalog = discover_plots([SEED_PLUGINS])
    renderer = PlotRenderer(catalog, tmp_path / "out",
                            selected=["TemplatePlot", "CumulativeDataPackets", "PairCount_1",
                                      "PacketRate"],
                            max_image_files=4)
    pyplot_before = set(plt.get_fignums())
    figures_before = live_figures()
    baseline = None
    for index in range(30):
        source = tmp_path / f"run_{index}.h5"
        renderer.add_packets(source, rows[index * 50:index * 50 + 200])
        renderer.render(source).result()
        if index % 6 == 5:
            renderer.close_idle(0)
            if baseline is None:
                baseline = rss_mb()
            assert set(plt.get_fignums()) == pyplot_before
    assert rss_mb() - baseline < 25
    assert len({image.file for image in renderer.images()}) == 4
    renderer.shutdown()
    assert set(plt.get_fignums()) == pyplot_before
    assert live_figures() == figures_before
