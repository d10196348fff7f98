"""Layouts: the generated default, single- and multi-tile YAMLs, and bad files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.layouts import default_layout_in, make_multi_tile_layout

from exporter.render import geometry
from exporter.render.geometry import GeometryError, layout_path, load_geometry, shared_geometry


@pytest.fixture(scope="module")
def default_layout(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    with default_layout_in(cache):
        path = layout_path()
    assert path == cache / "larpix-monitor" / "layout-2.4.0.yaml"
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PIXEL_GEOMETRY_PATH", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache-here"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_default_layout_is_larpix_geometry_layout_2_4_0(default_layout):
    doc = yaml.load(default_layout.read_text(), Loader=yaml.CSafeLoader)
    tile = load_geometry(default_layout).tile
    assert [chip for chip, _ in doc["chips"]] == list(range(11, 111))
    assert tile.connected.sum() == len(doc["pixels"]) == 4900
    assert tile.shape == (70, 70)
    assert tile.pitch == pytest.approx(4.434)
    pixels = {p[0]: (p[1], p[2]) for p in doc["pixels"]}
    for chip, channels in doc["chips"][::17]:
        for channel, pixel in enumerate(channels):
            if pixel is None:
                assert np.isnan(tile.x[chip, channel]) and tile.row[chip, channel] == -1
            else:
                assert (tile.x[chip, channel], tile.y[chip, channel]) == pixels[pixel]
    left, right, bottom, top = tile.extent
    assert (left, right) == pytest.approx((doc["x"], doc["x"] + doc["width"]))
    assert (bottom, top) == pytest.approx((doc["y"], doc["y"] + doc["height"]))


def test_grid_places_each_pixel_on_its_own_cell(default_layout):
    tile = load_geometry(default_layout).tile
    values = np.arange(256 * 64, dtype=float).reshape(256, 64)
    image = tile.grid(values)
    on = tile.connected
    assert np.isfinite(image).sum() == on.sum()
    assert sorted(image[np.isfinite(image)]) == sorted(values[on])
    chip, channel = 57, 12
    row = round((tile.y[chip, channel] - np.nanmin(tile.y)) / 4.434)
    col = round((tile.x[chip, channel] - np.nanmin(tile.x)) / 4.434)
    assert image[row, col] == values[chip, channel]


def test_local_layout_file_wins_over_the_generated_one(clean_env, tmp_path):
    local = tmp_path / "layout-2.4.0.yaml"
    local.write_text(yaml.dump({"pixels": [[0, 0.0, 0.0, [], []], [1, 4.0, 0.0, [], []]],
                                "chips": [[12, [1, 0]]], "x": 0, "y": 0,
                                "width": 8, "height": 4}))
    assert layout_path() == Path("layout-2.4.0.yaml")
    tile = shared_geometry().tile
    assert (tile.x[12, 0], tile.x[12, 1]) == (4.0, 0.0)
    assert tile.shape == (1, 2) and tile.pitch == 4.0


def test_geometry_path_naming_no_file_is_one_message(clean_env, tmp_path, caplog):
    missing = tmp_path / "nope.yaml"
    clean_env.setenv("PIXEL_GEOMETRY_PATH", str(missing))
    with pytest.raises(GeometryError, match=f"^{missing}: PIXEL_GEOMETRY_PATH names no file$"):
        layout_path()
    caplog.set_level(logging.ERROR)
    assert shared_geometry() is None and shared_geometry() is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"pixel maps disabled: {missing}: PIXEL_GEOMETRY_PATH names no file"]


@pytest.mark.parametrize("text,reason", [
    ("pixels: [1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "no mapping at top level"),
    ("width: 3\n", "needs 'pixels' and 'chips'"),
    ("pixels: [[0, 1.0]]\nchips: [[11, [0]]]\n", "malformed layout"),
    ("pixels: []\nchips: [[11, [null, null]]]\n", "connects no channel"),
])
def test_bad_layout_files_are_one_line_errors(tmp_path, text, reason):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(GeometryError) as error:
        load_geometry(bad)
    assert str(error.value).startswith(f"{bad}: ") and reason in str(error.value)
    assert "\n" not in str(error.value)


def test_multi_tile_layout_places_and_mirrors_tiles(default_layout, tmp_path):
    path = make_multi_tile_layout(default_layout, tmp_path)
    doc = yaml.safe_load(path.read_text())
    found = load_geometry(path)
    anode = found.anode
    assert anode is not None
    assert anode.tile_of_io[1, 1:5].tolist() == [1] * 4
    assert anode.tile_of_io[1, 5:9].tolist() == [2] * 4
    assert anode.tile_of_io[2, 1:5].tolist() == [3] * 4
    assert anode.tile_of_io[2, 5] == -1
    assert anode.io_group_of_tile == {1: 1, 2: 1, 3: 2}
    cells = doc["chip_channel_to_position"]
    chip, channel = divmod(next(iter(cells)), 1000)
    # The tile pattern: positions in pitch units, times the pitch.
    assert found.tile.x[chip, channel] == pytest.approx(cells[chip * 1000 + channel][0] * 4.434)
    for tile in (1, 2, 3):
        pz, py = doc["tile_positions"][tile][2], doc["tile_positions"][tile][1]
        z, y = anode.z[tile], anode.y[tile]
        assert np.nanmean(z) == pytest.approx(pz, abs=4.434 * 10)
        assert np.nanmean(y) == pytest.approx(py, abs=4.434 * 10)
    # Tiles 1 and 2 have opposite orientations along both axes: mirror images.
    o1, o2 = doc["tile_orientations"][1], doc["tile_orientations"][2]
    assert (o1[2] * o2[2], o1[1] * o2[1]) == (-1, -1)
    p1, p2 = doc["tile_positions"][1], doc["tile_positions"][2]
    on = found.tile.connected
    np.testing.assert_allclose(anode.z[1][on] - p1[2], -(anode.z[2][on] - p2[2]))
    np.testing.assert_allclose(anode.y[1][on] - p1[1], -(anode.y[2][on] - p2[1]))


def test_shared_geometry_reloads_a_changed_file(clean_env, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.dump({"pixels": [[0, 0.0, 0.0, [], []]], "chips": [[11, [0]]]}))
    clean_env.setenv("PIXEL_GEOMETRY_PATH", str(path))
    first = shared_geometry()
    path.write_text(yaml.dump({"pixels": [[0, 0.0, 0.0, [], []]], "chips": [[12, [0]]]}))
    os.utime(path, (1, first.path.stat().st_mtime + 10))
    second = shared_geometry()
    assert first.tile.connected[11, 0] and not first.tile.connected[12, 0]
    assert second.tile.connected[12, 0] and not second.tile.connected[11, 0]
    assert geometry.shared_geometry() is second
