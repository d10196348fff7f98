"""Once mode: read whole files, print a summary of each, write the metrics file and the plots.

``larpix-monitor once FILE ... -o PLOT_DIR [--metrics-file OUT.prom] [--no-plots]``.
Each file is read to its end in bounded chunks, exactly as the service reads
a growing one; an unusable file gets one line on stderr and does not stop
the others.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np
from prometheus_client import write_to_textfile
from tqdm import tqdm

from exporter.errors import InputError
from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry
from exporter.metrics.detector import TYPE_LABELS
from exporter.metrics.families import FIFO_FLAGS
from exporter.metrics.snapshot import DetectorSnapshot
from exporter.once_channels import ChannelOutputs
from exporter.packets import DATA, PARITY_TYPES
from exporter.quality.commands import sign_off, signoff_monitor, verdict_status
from exporter.quality.runs import RunReader
from exporter.source.reader import FileReader

#: Files at least this big (about 3 M packets) get a progress bar on a terminal.
PROGRESS_MIN_BYTES = 100 << 20
_PROG = "larpix-monitor once"


@dataclass(frozen=True)
class Totals:
    """Counters summed over labels: what a file added is the difference of two of these."""

    by_type: np.ndarray        # (type,)
    by_group: np.ndarray       # (io_group,)
    parity_words: int          # packets of types 0-3
    parity_errors: int
    fifo_flags: np.ndarray     # (local half, local full, shared half, shared full)

    @classmethod
    def of(cls, snap: DetectorSnapshot) -> Totals:
        words = list(PARITY_TYPES)
        codes = np.arange(snap.fifo.shape[1])
        return cls(
            by_type=snap.packets.sum(axis=0),
            by_group=np.bincount(snap.chip_group, weights=snap.packets.sum(axis=1),
                                 minlength=256).astype(np.int64),
            parity_words=int(snap.packets[:, words].sum()),
            parity_errors=int(snap.parity_errors[:, words].sum()),
            fifo_flags=np.array([snap.fifo[:, (codes & bit) > 0].sum()
                                 for _, _, bit in FIFO_FLAGS]))

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.by_type - other.by_type, self.by_group - other.by_group,
                      self.parity_words - other.parity_words,
                      self.parity_errors - other.parity_errors,
                      self.fifo_flags - other.fifo_flags)


@dataclass
class FileRead:
    """What reading one file took and gave."""

    format: str = "?"
    rows: int = 0
    nbytes: int = 0
    malformed: int = 0
    seconds: float = 0.0
    #: Figures written (paths), the file's plots being closed once written.
    images: list[Path] = field(default_factory=list)
    #: Rows that could not be read and were skipped (the file was read in part).
    skipped: int = 0


def run_once(files: list[Path], plot_dir: Path, ext: str = ".png",
             plots: list[str] | None = None, plugin_dirs: list[Path] | None = None,
             metrics_file: Path | None = None, no_plots: bool = False,
             rate_window: float = 10.0, hot_rate: float = 20.0,
             channels_file: Path | None = None, disable_list_file: Path | None = None,
             quality: QualityFlags | None = None) -> int:
    """Process ``files`` one after the other; exit status 2 if any was unusable, else 1
    if one was read in part (unreadable chunks skipped) or a quality check graded
    something bad (with ``quality`` flags given)."""
    try:
        detector = DetectorMetrics(rate_window, hot_rate)
    except ValueError as error:
        print(f"{_PROG}: {error}", file=sys.stderr)
        return 2
    if not _usable_dir(Path(plot_dir)):  # -o is created whatever else is asked
        return 2
    signoff = _signoff(quality, detector) if quality is not None else None
    if signoff is False:
        return 2
    health = MonitorHealth()
    renderer = None if no_plots else _renderer(plot_dir, ext, plots, plugin_dirs or [], health)
    if renderer is not None and renderer.unknown:
        print(f"{_PROG}: unknown plot(s): {' '.join(renderer.unknown)} "
              "(see 'larpix-monitor plots')", file=sys.stderr)
        renderer.shutdown()
        return 2
    status = 0
    outputs = ChannelOutputs(channels_file, disable_list_file, hot_rate)
    images: list[Path] = []
    try:
        for path in files:
            before = Totals.of(detector.snapshot())
            try:
                read = _read_file(Path(path), detector, health, renderer)
            except InputError as error:
                health.count_read_error(error.reason)
                print(error, file=sys.stderr)
                status = 2
                continue
            after = detector.snapshot()
            outputs.take(detector, Path(path))
            print(summary(Path(path), read, Totals.of(after) - before, after,
                          detector.data_span(str(path)), rate_window))
            images += read.images
            if read.skipped:
                status = max(status, 1)
            if signoff:
                signoff[1].add(path)
    finally:
        if renderer is not None:
            renderer.shutdown()
    sources = []
    if signoff:
        monitor, run = signoff
        result = sign_off(monitor, run, quality.report, [p for p in images if p.suffix == ".png"])
        status = max(status, verdict_status(result))
        sources.append(monitor.families)
    if metrics_file is not None and not _write_metrics(metrics_file, detector, health, sources):
        status = 2
    if not outputs.write():
        status = 2
    return status


@dataclass(frozen=True)
class QualityFlags:
    """``--reference``, ``--checks``, ``--asic-configs``, ``--report`` of once mode."""

    reference: str | None = None
    checks: str | None = None
    asic_configs: str | None = None
    report: str | None = None


def _signoff(flags: QualityFlags, detector: DetectorMetrics):
    """(quality monitor, run reader) for the sign-off, or False after a bad flag."""
    monitor = signoff_monitor(flags.reference, flags.checks, flags.asic_configs,
                              detector.rate_window, detector.hot_rate)
    if monitor is None:
        return False
    return monitor, RunReader(detector.rate_window, detector.hot_rate, detector)


def _usable_dir(plot_dir: Path) -> bool:
    try:
        plot_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"{plot_dir}: cannot create the plot directory ({error.strerror or error})",
              file=sys.stderr)
        return False
    return True


def _renderer(plot_dir: Path, ext: str, plots: list[str] | None, plugin_dirs: list[Path],
              health: MonitorHealth):
    from exporter.render import PlotRenderer, discover_plots

    return PlotRenderer(discover_plots(plugin_dirs), Path(plot_dir), ext, plots, health,
                        load_saved=False)


def _read_file(path: Path, detector: DetectorMetrics, health: MonitorHealth,
               renderer) -> FileRead:
    if not path.exists():
        raise InputError(str(path), "vanished", "no such file")
    read = FileRead()
    started = time.perf_counter()
    size = path.stat().st_size if path.is_file() else 0
    with tqdm(total=size, unit="B", unit_scale=True, desc=path.name, leave=False,
              file=sys.stderr, disable=not _progress_wanted(sys.stderr, size)) as progress:
        for chunk in FileReader(path, at_rest=True).read_new():
            detector.update(chunk, str(path))
            health.count_rows(chunk.format, chunk.rows, chunk.nbytes)
            if chunk.malformed:
                health.count_read_error("malformed_message", chunk.malformed)
            for damage in chunk.damaged:
                health.count_read_error(damage.reason)
                print(damage, file=sys.stderr)
            read.skipped += chunk.skipped
            if renderer is not None:
                renderer.add_packets(path, chunk.packets)
            read.format = chunk.format
            read.rows += chunk.rows
            read.nbytes += chunk.nbytes
            read.malformed += chunk.malformed
            progress.update(chunk.nbytes)
    if renderer is not None:  # drawn, written, then closed: memory does not grow per file
        read.images = [image.path for image in renderer.render(path).result()]
        renderer.close(path)
    read.seconds = time.perf_counter() - started
    return read


def _progress_wanted(stream: TextIO, size: int) -> bool:
    """A bar only for big files and only for a person watching (not in logs or pipes)."""
    return size >= PROGRESS_MIN_BYTES and stream.isatty()


def _write_metrics(metrics_file: Path, detector: DetectorMetrics, health: MonitorHealth,
                   sources: list | None = None) -> bool:
    try:
        write_to_textfile(str(metrics_file), build_registry(detector, health, sources or []))
    except OSError as error:
        print(f"{metrics_file}: cannot write the metrics file ({error.strerror or error})",
              file=sys.stderr)
        return False
    return True


def summary(path: Path, read: FileRead, added: Totals, snap: DetectorSnapshot,
            span: tuple[int, int] | None, rate_window: float) -> str:
    """A few lines a person reads: packets by type, time span, rates, parity, FIFO, channels."""
    packets = int(added.by_type.sum())
    lines = [f"{path}: {packets:,} packets ({read.format} file, {read.rows:,} rows, "
             f"{read.nbytes / 1e6:,.1f} MB) in {read.seconds:.2f} s"]
    if read.malformed:
        lines.append(f"  malformed PACMAN messages skipped: {read.malformed:,}")
    if read.skipped:
        lines.append(f"  unreadable rows skipped: {read.skipped:,} (read in part)")
    lines.append("  by type: " + ", ".join(f"{TYPE_LABELS[code]} {n:,}"
                                          for code, n in enumerate(added.by_type.tolist()) if n))
    if span is None:
        lines.append("  time span: no timestamp packets")
    else:
        lines.append(f"  time span: {_utc(span[0])} to {_utc(span[1])} UTC "
                     f"({span[1] - span[0]:,} s)")
    window = snap.window
    for group in np.flatnonzero((added.by_group > 0) & window.has_window).tolist():
        lines.append(
            f"  io_group {group}: {int(added.by_group[group]):,} packets, "
            f"{window.rate_hz[group].sum():,.1f} Hz over the last {rate_window:g} s of data, "
            f"{int(window.active[group]):,} active and {int(window.hot[group]):,} hot channels")
    lines.append(f"  parity errors: {_share(added.parity_errors, added.parity_words)} of "
                 f"{added.parity_words:,} LArPix words ({added.parity_errors:,})")
    data = int(added.by_type[DATA])
    flags = ", ".join(f"{fifo} {level} {_share(int(n), data)} ({int(n):,})"
                      for (fifo, level, _), n in zip(FIFO_FLAGS, added.fifo_flags, strict=True))
    lines.append(f"  FIFO flags of {data:,} data packets: {flags}")
    if read.images:
        lines.append(f"  plots: {len(read.images)} written")
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.3f} %" if whole else "n/a"


def _utc(unix: int) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
