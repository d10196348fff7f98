"""The single-thread plot renderer: buffers new packets per file, calls the plugins, saves figures.

pyplot is not thread-safe, and plugins written for the seed use it, so every
plugin call, every save and every close happens on one render thread.

Per file and plot the renderer keeps one plugin instance (so plugins may keep
per-file state in ``self``) and the figure it returned last. A file idle for
``close_idle``'s threshold loses both; if it grows again, its plots start over
from the new packets, as in the seed.

Memory: packets wait in a per-file buffer between renders. When a file's
buffer reaches ``max_buffered_rows``, a render of that file is queued at once.
If the previous such render has not finished yet, the plots are behind: with
``skip_when_behind`` (the service: metrics never wait for plots) the oldest
buffered rows are dropped and counted (``count_plot_rows_skipped``), else
(once mode: the figures cover the whole file) the caller waits for it. Either
way a file never holds more than about two caps of rows. Images in memory are
kept for the ``max_image_files`` files updated most recently.

Restarts: at construction the renderer loads the PNGs it wrote before, so the
gallery and /plots show the last plots of every run (finished ones included)
without waiting for new data. Only files laid out as ``output_path`` writes
them, for the plots of this renderer, are taken, and only those of the
``max_image_files`` runs modified most recently; ``updated`` is the file's
mtime. This is one directory scan at start; requests only ever see memory.
With another ``--ext`` the files on disk are not PNGs, so nothing is loaded and
a run's plots appear once it is rendered again. Once mode loads them too (it
shares this constructor); that costs a scan and a few PNG reads, and says
nothing above DEBUG. While a restart replays a file (``exporter.replay``) the
file is held: its renders feed the plugins but save and show nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import PACKET_DTYPE
from exporter.render.discovery import PlotCatalog, is_builtin
from exporter.render.figures import (
    PlotImage,
    close_figure,
    load_png,
    output_path,
    png_etag,
    save_figure,
    saved_pngs,
)
from exporter.render.packet_file import PacketFile

log = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED_ROWS = 1 << 21
DEFAULT_MAX_IMAGE_FILES = 16


@dataclass
class _FileState:
    instances: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    called: bool = False


class RenderHealth(Protocol):
    """Where render times and plugin failures are counted (the monitor's health metrics)."""

    def observe_render(self, plot: str, seconds: float) -> None: ...

    def count_plot_error(self, plot: str) -> None: ...

    def count_plot_rows_skipped(self, rows: int) -> None: ...


class PlotRenderer:
    """Feeds new packets of each file to the selected plots, on one render thread."""

    def __init__(self, catalog: PlotCatalog, plot_dir: Path, ext: str = ".png",
                 selected: list[str] | None = None, health: RenderHealth | None = None,
                 max_buffered_rows: int = DEFAULT_MAX_BUFFERED_ROWS,
                 max_image_files: int = DEFAULT_MAX_IMAGE_FILES,
                 load_saved: bool = True, skip_when_behind: bool = False) -> None:
        self.plot_dir = Path(plot_dir)
        self.skip_when_behind = skip_when_behind
        self.ext = ext
        self.health = health
        self.max_buffered_rows = max_buffered_rows
        self.max_image_files = max_image_files
        wanted = (list(selected) if selected is not None else
                  [name for name, cls in catalog.plots.items() if getattr(cls, "default", True)])
        self.plots = {name: catalog.plots[name] for name in wanted if name in catalog.plots}
        #: Names asked for with ``selected`` that no module defines.
        self.unknown = [name for name in wanted if name not in catalog.plots]
        for where, reason in catalog.failures.items():
            log.error("plot module %s skipped: %s", where, reason)
        if self.unknown:
            log.error("unknown plot(s): %s (see 'larpix-monitor plots')", " ".join(self.unknown))
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="plot-render")
        self._render_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._buffers: dict[Path, list[np.ndarray]] = {}
        self._buffered_rows: dict[Path, int] = {}
        self._early: dict[Path, concurrent.futures.Future] = {}
        self._last_active: dict[Path, float] = {}
        self._files: dict[Path, _FileState] = {}
        self._images: dict[tuple[str, str], PlotImage] = {}
        self._held: set[Path] = set()
        if load_saved:
            self._load_saved_images()

    # -- any thread -----------------------------------------------------------------------

    def add_packets(self, source: Path, packets: np.ndarray) -> None:
        """Buffer new packets of ``source`` for the next render."""
        if packets.dtype != PACKET_DTYPE:
            raise ValueError(f"{source}: packets must have PACKET_DTYPE, not {packets.dtype}")
        source = Path(source)
        with self._lock:
            self._last_active[source] = time.monotonic()
            if len(packets) == 0:
                return
            self._buffers.setdefault(source, []).append(packets)
            rows = self._buffered_rows.get(source, 0) + len(packets)
            self._buffered_rows[source] = rows
            if rows < self.max_buffered_rows:
                return
            previous = self._early.get(source)
            behind = previous is not None and not previous.done()
            skipped = self._drop_oldest(source) if behind and self.skip_when_behind else 0
        if skipped:
            if self.health is not None:
                self.health.count_plot_rows_skipped(skipped)
            return
        if previous is not None and not self._on_render_thread():
            previous.result()
        with self._lock:
            if self._buffered_rows.get(source, 0) >= self.max_buffered_rows:
                self._early[source] = self.render(source)

    def _drop_oldest(self, source: Path) -> int:
        """Keep the newest ``max_buffered_rows`` rows of ``source``'s buffer (lock held)."""
        chunks = self._buffers[source]
        excess = self._buffered_rows[source] - self.max_buffered_rows
        dropped = 0
        while excess - dropped >= len(chunks[0]):
            dropped += len(chunks.pop(0))
        if excess > dropped:
            chunks[0] = chunks[0][excess - dropped:]
            dropped = excess
        self._buffered_rows[source] -= dropped
        return dropped

    def render(self, source: Path) -> concurrent.futures.Future:
        """Queue a render of ``source``; the future gives the PlotImages made."""
        return self._executor.submit(self._render, Path(source))

    def hold(self, source: Path) -> None:
        """Renders of ``source`` feed its plots but show nothing (a figure must never show
        part of a file a restart replays) until ``release``."""
        with self._lock:
            self._held.add(Path(source))

    def release(self, source: Path) -> None:
        with self._lock:
            self._held.discard(Path(source))

    def images(self) -> list[PlotImage]:
        with self._lock:
            return sorted(self._images.values(), key=lambda i: (i.file, i.plot))

    def image(self, file: str, plot: str) -> PlotImage | None:
        with self._lock:
            return self._images.get((file, plot))

    def close(self, source: Path) -> None:
        """Close one file's figures and plugin state (once mode, after its last render)."""
        self._run_on_render_thread(self._close_file, Path(source))

    def close_idle(self, idle_seconds: float) -> None:
        """Close the figures and plugin state of files without new packets for ``idle_seconds``."""
        self._run_on_render_thread(self._close_idle, idle_seconds)

    def shutdown(self) -> None:
        """Close every figure and stop the render thread (pending renders finish first)."""
        self._run_on_render_thread(self._close_idle, -1.0)
        self._executor.shutdown(wait=True)

    def _load_saved_images(self) -> None:
        """Serve the plots a previous run of the monitor left in the plot directory."""
        if self.ext != ".png":
            log.debug("--ext %s: saved plots are not PNGs, so none are shown until their runs "
                     "are rendered again", self.ext)
            return
        saved = saved_pngs(self.plot_dir, self.plots)
        newest = sorted(saved, key=lambda stem: max(m for _, m in saved[stem].values()))
        loaded = [image for stem in newest[-self.max_image_files:]
                  for plot, (path, _) in sorted(saved[stem].items())
                  if (image := load_png(stem, plot, Path(path))) is not None]
        with self._lock:
            self._images.update({(image.file, image.plot): image for image in loaded})
        if loaded:
            log.debug("%d saved plot(s) of %d run(s) loaded from %s", len(loaded),
                     len({image.file for image in loaded}), self.plot_dir)

    # -- render thread --------------------------------------------------------------------

    def _on_render_thread(self) -> bool:
        return threading.current_thread() is self._render_thread

    def _run_on_render_thread(self, func: Any, *args: Any) -> Any:
        if self._on_render_thread():
            return func(*args)
        return self._executor.submit(func, *args).result()

    def _take_buffer(self, source: Path) -> np.ndarray:
        with self._lock:
            chunks = self._buffers.pop(source, [])
            self._buffered_rows.pop(source, None)
            self._last_active[source] = time.monotonic()
        if len(chunks) == 1:
            return chunks[0]
        return np.concatenate(chunks) if chunks else np.zeros(0, PACKET_DTYPE)

    def _render(self, source: Path) -> list[PlotImage]:
        self._render_thread = threading.current_thread()
        packets = self._take_buffer(source)
        state = self._files.setdefault(source, _FileState())
        if len(packets) == 0 and state.called:
            return []
        state.called = True
        with self._lock:
            held = source in self._held
        rows = packets.view()
        rows.flags.writeable = False
        shared: dict = {}  # the built-in plots' sums of these rows, counted once
        made = []
        for name, cls in self.plots.items():
            # Like the seed's h5py reads, a plugin from elsewhere gets a copy of its own
            # (and no shared sums): what it writes into its packets in place, no other plot sees.
            builtin = is_builtin(cls)
            given = PacketFile(str(source), rows if builtin else packets.copy(),
                               shared if builtin else None)
            image = self._render_plot(source, state, name, given, show=not held)
            if image is not None:
                made.append(image)
        return made

    def _render_plot(self, source: Path, state: _FileState, name: str,
                     fh: PacketFile, show: bool = True) -> PlotImage | None:
        started = time.perf_counter()
        previous = state.figures.get(name)
        try:
            instance = state.instances.get(name)
            if instance is None:
                instance = state.instances[name] = self.plots[name]()
            fig = instance(str(source), fh, previous)
            if fig is None:
                return None
            if not isinstance(fig, Figure):
                raise TypeError(f"returned {type(fig).__name__}, not a matplotlib Figure")
            if previous is not None and fig is not previous:
                close_figure(previous)
            state.figures[name] = fig
            if not show:
                return None
            path = output_path(self.plot_dir, source, name, self.ext)
            with self._lock:
                kept = self._images.get((source.stem, name))
            png = save_figure(fig, path, self.ext, unchanged=kept.png if kept else None)
        except Exception as exc:  # a plugin's failure must not stop the other plots
            self._report_failure(source, state, name, exc)
            return None
        if self.health is not None:
            self.health.observe_render(name, time.perf_counter() - started)
        if png is None:  # the same picture: the file, its time and its ETag stay
            return kept
        # updated: the file's own mtime, as the plots loaded at a restart have it
        image = PlotImage(file=source.stem, plot=name, png=png, etag=png_etag(png),
                          updated=_mtime(path), path=path)
        self._keep(image)
        return image

    def _report_failure(self, source: Path, state: _FileState, name: str,
                        exc: Exception) -> None:
        if self.health is not None:
            self.health.count_plot_error(name)
        if name in state.reported:
            log.debug("plot %s failed again for %s: %s", name, source, exc)
            return
        state.reported.add(name)
        log.error("plot %s failed for %s (last good image kept):\n%s", name, source,
                  "".join(traceback.format_exception(exc)).rstrip())

    def _keep(self, image: PlotImage) -> None:
        with self._lock:
            self._images[(image.file, image.plot)] = image
            newest: dict[str, float] = {}
            for (file, _), kept in self._images.items():
                newest[file] = max(newest.get(file, 0.0), kept.updated)
            if len(newest) <= self.max_image_files:
                return
            keep = set(sorted(newest, key=newest.__getitem__)[-self.max_image_files:])
            self._images = {k: v for k, v in self._images.items() if k[0] in keep}

    def _close_idle(self, idle_seconds: float) -> None:
        self._render_thread = threading.current_thread()
        now = time.monotonic()
        with self._lock:
            idle = [s for s in self._files
                    if now - self._last_active.get(s, now) > idle_seconds]
        for source in idle:
            self._close_file(source)

    def _close_file(self, source: Path) -> None:
        self._render_thread = threading.current_thread()
        state = self._files.pop(source, None)
        for fig in state.figures.values() if state is not None else ():
            close_figure(fig)
        with self._lock:
            if source not in self._buffers:
                self._last_active.pop(source, None)
                self._early.pop(source, None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed at once by someone else: when it was made will do
        return time.time()
