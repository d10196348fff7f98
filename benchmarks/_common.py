"""Set-up the service benchmarks share: the repository on sys.path, cached simulated files,
and a real ``larpix-monitor serve`` on a free loopback port.

The benchmarks run as scripts (``python benchmarks/bench_X.py``), so this directory is on
sys.path and they import this module as ``_common``.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "data"
MONITOR = str(Path(sys.executable).parent / "larpix-monitor")
ROWS_READ = re.compile(r"^larpix_monitor_rows_read_total\{[^}]*\} (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows_read(text: str) -> float:
    """Rows the monitor has read, summed over its files, from a /metrics exposition."""
    return sum(float(v) for v in ROWS_READ.findall(text))


def cached_simulation(path: Path, fmt: str, **kwargs) -> Path:
    """``path``, simulated once (with its truth file) and kept under benchmarks/data/."""
    if not path.exists():
        from exporter.simulate import simulate_file

        DATA.mkdir(parents=True, exist_ok=True)
        print(f"simulating {path.name} ...", flush=True)
        partial = path.with_suffix(".partial")
        simulate_file(partial, fmt, **kwargs)
        partial.rename(path)
        Path(f"{partial}.truth.json").rename(f"{path}.truth.json")
    return path


class ServeProcess:
    """``larpix-monitor serve -i data -o plots --port <free port> *extra``, logging to a file.

    ``log_name`` may contain ``{port}``; the log goes in ``log_dir``.
    """

    def __init__(self, data: Path, plots: Path, *extra: str, log_dir: Path,
                 log_name: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / log_name.format(port=self.port)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [MONITOR, "serve", "-i", str(data), "-o", str(plots), "--port", str(self.port),
             *extra], stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()
