"""Settings shared by the command line, the service and once mode."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from exporter import DEFAULT_PORT
from exporter.source.shard import Shard

PLOT_EXTENSIONS = (".png", ".pdf", ".svg", ".jpg")
DEFAULT_RATE_WINDOW = 10.0
DEFAULT_HOT_RATE = 20.0
#: Directory of the DAQ's hydra-network files for the network plot (``--network`` sets it).
NETWORK_DIR_ENV = "LARPIX_MONITOR_NETWORK_DIR"


def plugin_dirs_from_env(flag_dirs: list[str] | None) -> list[Path]:
    """Plugin directories: ``--plugin-dir`` flags first, then LARPIX_MONITOR_PLUGIN_PATH."""
    dirs = [Path(d) for d in (flag_dirs or [])]
    env = os.environ.get("LARPIX_MONITOR_PLUGIN_PATH", "")
    dirs += [Path(d) for d in env.split(":") if d]
    return dirs


@dataclass
class MonitorConfig:
    """Everything ``serve`` (and ``demo``) needs; flags win over environment."""

    data_dir: Path
    plot_dir: Path
    interval: float = 30.0
    flush_interval: float = 1800.0
    ext: str = ".png"
    plots: list[str] | None = None
    plugin_dirs: list[Path] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    glob: str = "*.h5"
    rate_window: float = DEFAULT_RATE_WINDOW
    hot_rate: float = DEFAULT_HOT_RATE
    read_all: bool = False
    poll: bool = False
    auth_token: str | None = None
    log_level: str = "INFO"
    no_plots: bool = False
    #: quality checks: reference run, limits file, ASIC config directory
    reference: str | None = None
    checks: str | None = None
    asic_configs: str | None = None
    shard: Shard | None = None
