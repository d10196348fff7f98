"""larpix-geometry layouts: where each (chip, channel) pixel sits, on a tile and on the anode.

Which layout: ``PIXEL_GEOMETRY_PATH`` if set (it must exist), else
``./layout-2.4.0.yaml`` if it exists, else layout-2.4.0 generated once by the
installed larpix-geometry package's own generator into the cache directory
(``$XDG_CACHE_HOME/larpix-monitor``, default ``~/.cache/larpix-monitor``).

Two kinds of YAML are read:

* a single-tile layout (``pixels`` + ``chips``, as ``layout-X.Y.Z.py`` writes it):
  every tile of every io_group uses it;
* a multi-tile layout (``multi_tile_layout.py``: ``pixel_pitch``,
  ``chip_channel_to_position``, ``tile_chip_to_io``, ``tile_positions``,
  ``tile_orientations``): the tile pattern plus where each tile sits on its anode,
  which the anode map needs.

A layout that cannot be used raises ``GeometryError`` with one line naming the
file and the reason; ``shared_geometry()`` logs that line once and returns None
so only the maps that need a layout are disabled.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

log = logging.getLogger(__name__)

DEFAULT_LAYOUT_NAME = "layout-2.4.0.yaml"
N_CHIP_IDS = 256
N_CHANNELS = 64


class GeometryError(Exception):
    """A layout file the pixel maps cannot use; ``str()`` is one line naming the file."""


@dataclass(frozen=True)
class TileLayout:
    """Pixel centres of one tile, indexed ``[chip_id, channel_id]`` (NaN: no pixel)."""

    x: np.ndarray
    y: np.ndarray
    pitch: float
    #: Grid cell of each pixel, -1 where there is none; grid shape is ``shape``.
    row: np.ndarray
    col: np.ndarray
    shape: tuple[int, int]

    @property
    def connected(self) -> np.ndarray:
        return self.row >= 0

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) in mm of the pixel grid, for ``imshow``."""
        half = self.pitch / 2
        return (float(np.nanmin(self.x)) - half, float(np.nanmax(self.x)) + half,
                float(np.nanmin(self.y)) - half, float(np.nanmax(self.y)) + half)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """A ``shape`` image of per-channel ``values`` (indexed [chip, channel]); NaN off-pixel."""
        image = np.full(self.shape, np.nan)
        on = self.connected
        image[self.row[on], self.col[on]] = values[on]
        return image


@dataclass(frozen=True)
class AnodeLayout:
    """Where pixels sit on the anode planes: one tile layout placed at each tile position."""

    #: Tile id of each (io_group, io_channel), ``[io_group, io_channel]``, -1 if unknown.
    tile_of_io: np.ndarray
    #: io_group of each tile id (index = tile id).
    io_group_of_tile: dict[int, int]
    #: Anode-plane coordinates (mm) ``[tile id, chip_id, channel_id]``:
    #: horizontal (the detector's z), vertical (y).
    z: np.ndarray
    y: np.ndarray
    pitch: float


@dataclass(frozen=True)
class Geometry:
    path: Path
    tile: TileLayout
    anode: AnodeLayout | None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "larpix-monitor"


def generate_default_layout(folder: Path) -> Path:
    """Run larpix-geometry's own layout-2.4.0 generator; the YAML lands in ``folder``."""
    import larpixgeometry.layouts as layouts

    target = folder / DEFAULT_LAYOUT_NAME
    scripts = Path(layouts.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        code = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); "
                "runpy.run_path(sys.argv[2], run_name='__main__')")
        done = subprocess.run([sys.executable, "-c", code, str(scripts),
                               str(scripts / "layout-2.4.0.py")],
                              cwd=work, capture_output=True, text=True, check=False)
        made = Path(work) / DEFAULT_LAYOUT_NAME
        if done.returncode != 0 or not made.exists():
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise GeometryError(f"{scripts / 'layout-2.4.0.py'}: layout generator failed: {reason}")
        os.replace(made, target)
    return target


def layout_path() -> Path:
    """The layout file to use now (generating the default one if needed)."""
    named = os.environ.get("PIXEL_GEOMETRY_PATH")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise GeometryError(f"{path}: PIXEL_GEOMETRY_PATH names no file")
        return path
    local = Path(DEFAULT_LAYOUT_NAME)
    if local.is_file():
        return local
    cached = cache_dir() / DEFAULT_LAYOUT_NAME
    if cached.is_file():
        return cached
    return generate_default_layout(cache_dir())


def _grid(x: np.ndarray, y: np.ndarray, pitch: float) -> tuple[np.ndarray, np.ndarray,
                                                                 tuple[int, int]]:
    on = np.isfinite(x)
    row = np.full(x.shape, -1, dtype=np.int32)
    col = np.full(x.shape, -1, dtype=np.int32)
    col[on] = np.rint((x[on] - x[on].min()) / pitch).astype(np.int32)
    row[on] = np.rint((y[on] - y[on].min()) / pitch).astype(np.int32)
    return row, col, (int(row.max()) + 1, int(col.max()) + 1)


def _pitch_of(values: np.ndarray) -> float:
    steps = np.diff(np.unique(np.round(values, 6)))
    steps = steps[steps > 1e-6]
    if len(steps) == 0:
        return 1.0
    return float(steps.min())


def _tile_from_single(path: Path, doc: dict) -> TileLayout:
    pixels = {int(p[0]): (float(p[1]), float(p[2])) for p in doc["pixels"]}
    x = np.full((N_CHIP_IDS, N_CHANNELS), np.nan)
    y = np.full((N_CHIP_IDS, N_CHANNELS), np.nan)
    for chip_id, channels in doc["chips"]:
        for channel, pixel in enumerate(channels[:N_CHANNELS]):
            if pixel is not None:
                x[int(chip_id), channel], y[int(chip_id), channel] = pixels[int(pixel)]
    if not np.isfinite(x).any():
        raise GeometryError(f"{path}: layout connects no channel to a pixel")
    pitch = _pitch_of(x[np.isfinite(x)])
    row, col, shape = _grid(x, y, pitch)
    return TileLayout(x=x, y=y, pitch=pitch, row=row, col=col, shape=shape)


def _tile_from_multi(doc: dict) -> TileLayout:
    pitch = float(doc["pixel_pitch"])
    ix = np.full((N_CHIP_IDS, N_CHANNELS), np.nan)
    iy = np.full((N_CHIP_IDS, N_CHANNELS), np.nan)
    for key, (px, py) in doc["chip_channel_to_position"].items():
        chip_id, channel = divmod(int(key), 1000)
        ix[chip_id, channel], iy[chip_id, channel] = px, py
    row, col, shape = _grid(ix, iy, 1.0)
    return TileLayout(x=ix * pitch, y=iy * pitch, pitch=pitch, row=row, col=col, shape=shape)


def _anode_from_multi(doc: dict, tile: TileLayout) -> AnodeLayout:
    positions = {int(t): [float(v) for v in p] for t, p in doc["tile_positions"].items()}
    orientations = {int(t): [float(v) for v in o] for t, o in doc["tile_orientations"].items()}
    n_tiles = max(positions) + 1
    tile_of_io = np.full((256, 256), -1, dtype=np.int32)
    io_group_of_tile: dict[int, int] = {}
    for tile_id, chips in doc["tile_chip_to_io"].items():
        for io in chips.values():
            io_group, io_channel = divmod(int(io), 1000)
            tile_of_io[io_group, io_channel] = int(tile_id)
            io_group_of_tile[int(tile_id)] = io_group
    # Centre the tile pattern on the tile position, mirrored by the tile's orientation.
    on = tile.connected
    size_x = np.nanmax(tile.x) - np.nanmin(tile.x) + tile.pitch
    size_y = np.nanmax(tile.y) - np.nanmin(tile.y) + tile.pitch
    local_x = tile.x - np.nanmin(tile.x) + tile.pitch / 2 - size_x / 2
    local_y = tile.y - np.nanmin(tile.y) + tile.pitch / 2 - size_y / 2
    z = np.full((n_tiles, N_CHIP_IDS, N_CHANNELS), np.nan)
    y = np.full((n_tiles, N_CHIP_IDS, N_CHANNELS), np.nan)
    for tile_id, position in positions.items():
        orientation = orientations[tile_id]
        z[tile_id][on] = local_x[on] * orientation[2] + position[2]
        y[tile_id][on] = local_y[on] * orientation[1] + position[1]
    return AnodeLayout(tile_of_io=tile_of_io, io_group_of_tile=io_group_of_tile, z=z, y=y,
                       pitch=tile.pitch)


def load_geometry(path: Path) -> Geometry:
    """Read a single- or multi-tile layout YAML."""
    try:
        with open(path) as stream:
            doc = yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as exc:
        raise GeometryError(f"{path}: cannot read layout: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise GeometryError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(doc, dict):
        raise GeometryError(f"{path}: not a larpix-geometry layout (no mapping at top level)")
    try:
        if "chip_channel_to_position" in doc:
            tile = _tile_from_multi(doc)
            anode = (_anode_from_multi(doc, tile)
                     if "tile_positions" in doc and "tile_chip_to_io" in doc else None)
            return Geometry(path=path, tile=tile, anode=anode)
        if "pixels" in doc and "chips" in doc:
            return Geometry(path=path, tile=_tile_from_single(path, doc), anode=None)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise GeometryError(f"{path}: malformed layout ({type(exc).__name__}: {exc})") from exc
    raise GeometryError(f"{path}: not a larpix-geometry layout (needs 'pixels' and 'chips', "
                        "or 'chip_channel_to_position')")


_lock = threading.Lock()
_loaded: dict[tuple[str, float], Geometry | GeometryError] = {}


def shared_geometry() -> Geometry | None:
    """The current layout, loaded once per file version; None (logged once) if unusable."""
    with _lock:
        try:
            path = layout_path()
            key = (str(path.resolve()), path.stat().st_mtime)
        except (GeometryError, OSError) as exc:
            error = exc if isinstance(exc, GeometryError) else GeometryError(str(exc))
            key = (str(error), 0.0)
            if key not in _loaded:
                _loaded[key] = error
                log.error("pixel maps disabled: %s", error)
            return None
        if key not in _loaded:
            try:
                _loaded[key] = load_geometry(path)
            except GeometryError as error:
                _loaded[key] = error
                log.error("pixel maps disabled: %s", error)
        found = _loaded[key]
        return None if isinstance(found, GeometryError) else found

