"""``larpix-monitor demo``: a simulated DAQ writing live runs, served by the monitor.

What a new user sees first: the simulator appends one data second per wall
second to a packet file and a raw file (the two io_groups of one module, as two
DAQ streams would be), starts new files every ``--run-seconds``, and the monitor
serves them. The module's hydra networks and its multi-tile layout are written
beside the data, so the network and anode maps draw too (unless
``PIXEL_GEOMETRY_PATH`` or ``LARPIX_MONITOR_NETWORK_DIR`` name the user's own).
Ctrl-C stops both; a temporary directory is removed again.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from exporter.config import NETWORK_DIR_ENV, MonitorConfig
from exporter.render.geometry import GeometryError, layout_path
from exporter.service import serve
from exporter.simulate import LiveSimulation
from exporter.simulate.network import write_multi_tile_layout, write_networks

log = logging.getLogger(__name__)

#: (file name prefix, format, io_groups) of the simulated DAQ streams.
STREAMS = (("packets", "packet", (1,)), ("raw", "raw", (2,)))


def describe_detector(folder: Path) -> None:
    """Hydra networks and a multi-tile layout of the simulated module, for the maps needing them."""
    io_groups = tuple(group for _, _, groups in STREAMS for group in groups)
    networks = write_networks(folder / "networks", io_groups)
    os.environ.setdefault(NETWORK_DIR_ENV, str(folder / "networks"))
    if "PIXEL_GEOMETRY_PATH" in os.environ:
        return
    try:
        layout = write_multi_tile_layout(layout_path(), networks, folder)
    except (GeometryError, RuntimeError) as error:
        log.error("anode map off: %s", error)
        return
    os.environ["PIXEL_GEOMETRY_PATH"] = str(layout)


class SimulatedDaq:
    """Writes run after run on its own threads until stopped."""

    def __init__(self, data_dir: Path, rate: float, run_seconds: float) -> None:
        self.data_dir = data_dir
        self.rate = rate
        self.run_seconds = run_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._runs, name="simulated-daq", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _runs(self) -> None:
        run = 0
        while not self._stop.is_set():
            run += 1
            stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
            writers = [
                threading.Thread(target=self._write, name=f"daq-{fmt}", daemon=True, args=(
                    LiveSimulation(self.data_dir / f"{prefix}-run{run:04d}-{stamp}.h5", fmt,
                                   rate=self.rate, io_groups=groups, seed=run),))
                for prefix, fmt, groups in STREAMS]
            log.info("simulated run %d started (%s)", run, stamp)
            for writer in writers:
                writer.start()
            for writer in writers:
                writer.join()

    def _write(self, live: LiveSimulation) -> None:
        try:
            live.run(duration=self.run_seconds, stop=self._stop)
        except Exception:  # the demo goes on without this stream; say why
            log.exception("%s: simulated writer failed", live.path)


def run_demo(args: argparse.Namespace) -> int:
    temporary = args.dir is None
    root = Path(tempfile.mkdtemp(prefix="larpix-monitor-demo-")) if temporary else Path(args.dir)
    data_dir, plot_dir = (root / "data", root / "plots") if temporary else (root, root / "plots")
    data_dir.mkdir(parents=True, exist_ok=True)
    describe_detector(root / "detector")
    daq = SimulatedDaq(data_dir, rate=args.rate, run_seconds=args.run_seconds)
    daq.start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"larpix-monitor demo: simulated runs in {data_dir}, a new run every "
          f"{args.run_seconds:g} s.\nOpen http://{host}:{args.port}/ (Ctrl-C stops).",
          flush=True)
    try:
        return serve(MonitorConfig(data_dir=data_dir, plot_dir=plot_dir,
                                   interval=args.interval, host=args.host, port=args.port))
    finally:
        daq.stop()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
