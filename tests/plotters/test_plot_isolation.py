"""A plugin that writes into ``fh["packets"]`` does not change what the built-in plots count.

The renderer hands one array to every plot of a render. Built-in plots keep no
state keyed on that array (no cache by identity) and no views into it, so a
plugin that zeroes the ADC column after them, and a caller that refills the same
buffer for the next render, leave their numbers those of the rows they were given.
A plugin that runs *before* a built-in in the same render cannot hand it what it
wrote: the renderer gives built-ins a read-only view and other plugins a copy each.
"""

from __future__ import annotations

import numpy as np
import pytest

from exporter.metrics import MonitorHealth
from exporter.packets import DATA, tile_of
from exporter.render import PacketFile, PlotRenderer, discover_plots
from exporter.simulate import simulate_file
from exporter.source.reader import FileReader

ZERO_ADC = '''
class ZeroAdc:
    """Zeroes the ADC of every packet it is given, in place."""

    def __call__(self, filename, fh, fig=None):
        fh["packets"]["dataword"][:] = 0
        return fig
'''


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "run_iso.h5"
    simulate_file(path, "packet", seconds=4, seed=3)
    return str(path), np.concatenate([chunk.packets for chunk in FileReader(path).read_new()])


def render_with_plugin(tmp_path, filename: str, batches: list[np.ndarray]) -> dict:
    """Render ``batches`` through one reused buffer: built-ins first, then ZeroAdc."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "zero_adc.py").write_text(ZERO_ADC)
    plots = discover_plots([tmp_path / "plugins"]).plots
    instances = {name: plots[name]() for name in ("AdcSpectrum", "ChipMeanAdc", "ZeroAdc")}
    figures = dict.fromkeys(instances)
    buffer = np.empty(len(batches[0]), batches[0].dtype)
    for batch in batches:
        buffer[:] = batch
        fh = PacketFile(filename, buffer)
        for name, plot in instances.items():
            figures[name] = plot(filename, fh, figures[name])
        assert not buffer["dataword"].any()  # the plugin did write
    return figures


def test_plugin_writing_packets_in_place_leaves_builtin_numbers_alone(rows, tmp_path):
    filename, packets = rows
    half = len(packets) // 2
    batches = [packets[:half].copy(), packets[half:2 * half].copy()]
    unmodified = np.concatenate(batches)
    figures = render_with_plugin(tmp_path, filename, batches)

    data = unmodified[unmodified["packet_type"] == DATA]
    assert data["dataword"].any()
    spectrum = {line.get_label().split(" (")[0]: line.get_ydata()
                for line in figures["AdcSpectrum"].axes[0].get_lines()}
    for group in np.unique(data["io_group"]):
        expected = np.bincount(data["dataword"][data["io_group"] == group], minlength=256)
        np.testing.assert_array_equal(spectrum[f"io_group {group}"], expected)

    chip = ((data["io_group"].astype(np.int64) * 1000 + tile_of(data["io_channel"])) * 256
            + data["chip_id"])
    keys, index = np.unique(chip, return_inverse=True)
    means = np.bincount(index, weights=data["dataword"]) / np.bincount(index)
    rows_of = np.unique(keys // 256, return_inverse=True)[1]
    expected_image = np.full((rows_of.max() + 1, int(np.ptp(keys % 256)) + 1), np.nan)
    expected_image[rows_of, keys % 256 - (keys % 256).min()] = means
    drawn = figures["ChipMeanAdc"].axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.ma.filled(drawn, np.nan), expected_image)


def test_renderer_keeps_a_plugin_s_writes_from_the_plots_after_it(rows, tmp_path):
    filename, packets = rows
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "zero_adc.py").write_text(ZERO_ADC)
    catalog = discover_plots([tmp_path / "plugins"])
    health = MonitorHealth()
    renderer = PlotRenderer(catalog, tmp_path / "out", selected=["ZeroAdc", "AdcSpectrum"],
                            health=health, load_saved=False)
    try:
        assert list(renderer.plots) == ["ZeroAdc", "AdcSpectrum"]  # the plugin goes first
        given = packets.copy()
        renderer.add_packets(filename, given)
        images = renderer.render(filename).result(timeout=60)
    finally:
        renderer.shutdown()
    assert [image.plot for image in images] == ["AdcSpectrum"]  # ZeroAdc drew nothing
    assert health.snapshot().plot_errors == {}  # its write went to a copy of its own
    np.testing.assert_array_equal(given, packets)  # the rows every other plot saw
