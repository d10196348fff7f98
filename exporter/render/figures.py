"""Figures on disk and in memory: the seed's file layout, atomic saves, PNGs kept for HTTP."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_DIR_SUFFIX = "_dqm"


@dataclass(frozen=True)
class PlotImage:
    """The latest image of one plot of one file, ready to serve over HTTP."""

    file: str
    plot: str
    png: bytes = field(repr=False)
    #: Strong ETag of ``png``, already quoted for the header.
    etag: str
    updated: float
    path: Path


def output_path(plot_dir: Path, source: Path, plot: str, ext: str) -> Path:
    """``PLOT_DIR/<stem>_dqm/<stem>_<Plot><ext>``, the seed's layout."""
    stem = source.stem
    return plot_dir / f"{stem}{RUN_DIR_SUFFIX}" / f"{stem}_{plot}{ext}"


def png_etag(png: bytes) -> str:
    """Strong ETag of an image's bytes, quoted for the header."""
    return '"' + hashlib.blake2b(png, digest_size=16).hexdigest() + '"'


def saved_pngs(plot_dir: Path, plots: Collection[str]) -> dict[str, dict[str, tuple[str, float]]]:
    """stem -> plot -> (path, mtime) of the PNGs under ``plot_dir`` laid out as ``output_path``
    writes them; symbolic links and anything else are left alone."""
    found: dict[str, dict[str, tuple[str, float]]] = {}
    try:
        with os.scandir(plot_dir) as entries:
            run_dirs = [e for e in entries
                        if e.name.endswith(RUN_DIR_SUFFIX) and len(e.name) > len(RUN_DIR_SUFFIX)
                        and e.is_dir(follow_symlinks=False)]
    except OSError:
        return found
    for run_dir in run_dirs:
        stem = run_dir.name[:-len(RUN_DIR_SUFFIX)]
        plot_of = {f"{stem}_{plot}.png": plot for plot in plots}
        try:
            with os.scandir(run_dir.path) as entries:
                for entry in entries:
                    plot = plot_of.get(entry.name)
                    if plot is not None and entry.is_file(follow_symlinks=False):
                        mtime = entry.stat(follow_symlinks=False).st_mtime
                        found.setdefault(stem, {})[plot] = (entry.path, mtime)
        except OSError as err:  # e.g. a run directory without read permission
            log.warning("%s: saved plots not loaded: %s", run_dir.path, err.strerror)
    return found


def load_png(file: str, plot: str, path: Path) -> PlotImage | None:
    """The image saved at ``path``, or None (with a warning) if it is not a readable PNG."""
    try:
        with open(path, "rb") as handle:
            updated = os.fstat(handle.fileno()).st_mtime
            png = handle.read()
    except OSError as err:
        log.warning("%s: saved plot not loaded: %s", path, err.strerror)
        return None
    if not png.startswith(PNG_SIGNATURE):
        log.warning("%s: saved plot not loaded: not a PNG file", path)
        return None
    return PlotImage(file=file, plot=plot, png=png, etag=png_etag(png), updated=updated,
                     path=path)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once, at import: os.umask can only be read by setting it, which is not thread-safe.
_FILE_MODE = 0o666 & ~_current_umask()


def _write_atomically(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it private; figures are for everyone
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_figure(fig: Figure, path: Path, ext: str, unchanged: bytes | None = None
                ) -> bytes | None:
    """Write ``fig`` to ``path`` atomically in ``ext``'s format; return its PNG bytes, or
    None when they equal ``unchanged`` (the image already there: nothing is written)."""
    if type(fig.canvas) is FigureCanvasBase:
        # A Figure made without pyplot: give it an Agg canvas of its own, which keeps
        # its renderer between saves instead of allocating a new pixel buffer each time.
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # Light compression: a third faster to write, a tenth or so larger.
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    png = buffer.getvalue()
    if png == unchanged:
        return None
    if ext == ".png":
        _write_atomically(path, lambda out: out.write(png))
    else:
        _write_atomically(path, lambda out: fig.savefig(out, format=ext.lstrip(".")))
    return png


def close_figure(fig: Figure) -> None:
    """Release a figure, including pyplot's reference if pyplot made it."""
    # Imported here: exporter.render.discovery (imported above) has chosen the Agg backend by now.
    import matplotlib.pyplot as plt

    plt.close(fig)
    fig.clear()
