"""Render time of the built-in plots for 1 M new packets: each plot alone, then all together.

Each plot alone: a fresh instance gets the packets in one call and its figure is
saved as PNG, timed together. All together: the PlotRenderer with the default
plots, from ``add_packets`` to the finished render (files written), ``--runs``
times with a fresh renderer, best run shown; its per-plot times are the
renderer's own (``observe_render``), and CPU is the process's CPU time, which
a busy machine inflates less than the wall time. The target is the default
plots for 1 M packets in at most 5 s.

    .venv/bin/python benchmarks/bench_plots.py [--packets N] [--runs 3] [--docs-images docs/images]

``--docs-images`` also writes a few of the figures, at a smaller size, for the docs.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from exporter.render import PacketFile, PlotRenderer, discover_plots
from exporter.render.figures import save_figure
from exporter.simulate import simulate_file
from exporter.source.reader import FileReader

TARGET_SECONDS = 5.0
DOC_PLOTS = ("PacketRate", "TileRate", "HotPixels", "AdcSpectrum", "PixelMaps", "ChannelHealth")


def simulated_packets(folder: Path, n_packets: int) -> tuple[Path, np.ndarray]:
    path = folder / "bench_run.h5"
    simulate_file(path, "packet", n_packets=n_packets, seed=1)
    packets = np.concatenate([chunk.packets for chunk in FileReader(path).read_new()])
    return path, packets


def time_each(catalog, path: Path, packets: np.ndarray, out: Path) -> dict[str, float]:
    seconds = {}
    for name, cls in sorted(catalog.plots.items()):
        started = time.perf_counter()
        fig = cls()(str(path), PacketFile(str(path), packets), None)
        if fig is not None:
            save_figure(fig, out / f"{name}.png", ".png")
        seconds[name] = time.perf_counter() - started
    return seconds


class PlotTimes:
    """Render seconds per plot, as the renderer reports them to the monitor's health metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def observe_render(self, plot: str, seconds: float) -> None:
        self.seconds[plot] = seconds

    def count_plot_error(self, plot: str) -> None:
        raise RuntimeError(f"plot {plot} failed")

    def count_plot_rows_skipped(self, rows: int) -> None:
        pass


@dataclass
class Together:
    wall: float
    cpu: float
    figures: int
    per_plot: dict[str, float]


def time_together(catalog, path: Path, packets: np.ndarray, out: Path) -> Together:
    gc.collect()  # the figures time_each left behind: the service has no such heap
    times = PlotTimes()
    renderer = PlotRenderer(catalog, out, health=times, max_buffered_rows=len(packets) + 1)
    started, cpu = time.perf_counter(), time.process_time()
    renderer.add_packets(path, packets)
    made = renderer.render(path).result()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    renderer.shutdown()
    return Together(elapsed, cpu, len(made), times.seconds)


def write_doc_images(catalog, path: Path, packets: np.ndarray, folder: Path) -> None:
    """Small PNGs for the docs: 60 dpi, reduced to a 128-colour palette."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in DOC_PLOTS:
        fig = catalog.plots[name]()(str(path), PacketFile(str(path), packets), None)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=60)
        image = Image.open(buffer).convert("RGB").quantize(colors=128)
        image.save(folder / f"{name}.png", optimize=True)
        print(f"wrote {folder / f'{name}.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="renderer runs (best shown)")
    parser.add_argument("--docs-images", type=Path, metavar="DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        os.environ.setdefault("XDG_CACHE_HOME", str(work_dir / "cache"))
        path, packets = simulated_packets(work_dir, args.packets)
        catalog = discover_plots([])
        defaults = [n for n, cls in catalog.plots.items() if getattr(cls, "default", True)]
        # Warm-up: fonts, the layout, numpy and matplotlib code paths.
        time_each(catalog, path, packets[:20_000], work_dir / "warm")
        each = time_each(catalog, path, packets, work_dir / "each")
        runs = [time_together(catalog, path, packets, work_dir / f"all{i}")
                for i in range(args.runs)]
        best = min(runs, key=lambda run: run.wall)
        print(f"{len(packets):,} packets, {os.cpu_count()} CPUs, load average "
              + " ".join(f"{v:.2f}" for v in os.getloadavg()))
        print(f"{'plot':<22} {'alone':>8} {'renderer':>9}")
        for name, seconds in each.items():
            mark = "" if name in defaults else "  (only with --plots)"
            in_renderer = f"{best.per_plot[name]:9.3f}" if name in best.per_plot else " " * 9
            print(f"{name:<22} {seconds:8.3f} {in_renderer}{mark}")
        print(f"{'sum of default plots':<22} {sum(each[n] for n in defaults):8.3f}")
        verdict = "meets" if best.wall <= TARGET_SECONDS else "misses"
        print(f"{'all default, renderer':<22} {best.wall:8.3f}  ({best.figures} figures, "
              f"CPU {best.cpu:.3f} s; {verdict} the {TARGET_SECONDS:g} s target)")
        print("renderer runs (wall/CPU s): "
              + ", ".join(f"{run.wall:.2f}/{run.cpu:.2f}" for run in runs))
        if args.docs_images:
            write_doc_images(catalog, path, packets, args.docs_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
