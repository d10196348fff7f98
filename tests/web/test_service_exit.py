"""A stopped service process ends once its state is saved, whatever its other threads do."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from support.service import MonitorProcess

from exporter.simulate import simulate_file

#: ``larpix-monitor serve`` with a daemon thread that reads with h5py all the time.
SERVE_BESIDE_A_READING_THREAD = """
import sys
import threading

import h5py

from exporter.cli import main


def read_forever(path):
    while True:
        with h5py.File(path, "r", locking=False) as f:
            f["packets"][:20_000]


threading.Thread(target=read_forever, args=(sys.argv[1],), daemon=True).start()
sys.exit(main(["serve", *sys.argv[2:]]))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_ends_the_process_while_a_daemon_thread_reads_with_h5py(
        tmp_path: Path, attempt: int) -> None:
    """The quality thread opens data files for their ASIC masks and may still be at it when
    a stop signal has saved the state. The interpreter's teardown then waited forever for
    h5py's global lock, which that thread held (or crashed). A thread that reads all the
    time makes that the likely case; three processes in a row."""
    elsewhere = tmp_path / "elsewhere.h5"
    simulate_file(elsewhere, "packet", n_packets=50_000, seed=attempt)
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    monitor = MonitorProcess(data, plots, "--no-plots", command=(
        sys.executable, "-c", SERVE_BESIDE_A_READING_THREAD, str(elsewhere)))
    monitor.start()
    try:
        assert monitor.stop(signal.SIGTERM, timeout=20) == 0
    finally:
        if monitor.proc is not None and monitor.proc.poll() is None:
            monitor.proc.kill()
    log = monitor.log_text()
    assert "stopped; checkpoint written" in log
    assert "Traceback" not in log
