"""``larpix-monitor serve``: ingest thread, render thread and HTTP, under uvicorn.

Start-up checks the user's choices first (data directory, plot directory,
plot names, address) and stops with one line if one is wrong. SIGTERM and
Ctrl-C stop uvicorn gracefully; then ingest finishes its current chunk, the
checkpoint is written and the figures are closed.
"""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path
from types import FrameType

import uvicorn

from exporter.config import MonitorConfig
from exporter.ingest import Ingest
from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry
from exporter.quality import ChecksConfigError, MaskError, QualityMonitor, setup_quality
from exporter.quality.loop import QualityLoop
from exporter.render import PlotRenderer, discover_plots
from exporter.source.checkpoint import CheckpointStore
from exporter.source.shard import watcher_for
from exporter.web.app import create_app

log = logging.getLogger(__name__)

EXIT_USAGE = 2


class StartupError(Exception):
    """A setting the service cannot start with; the message is the one line to show."""


def serve(config: MonitorConfig) -> int:
    logging.getLogger().setLevel(config.log_level)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # our own lines name the files
    try:
        data_dir, plot_dir = _check_directories(config)
        quality_setup = setup_quality(config.reference, config.checks, config.asic_configs)
        sock = _listen(config.host, config.port)
    except (StartupError, ChecksConfigError, MaskError) as err:
        log.error("%s", err)
        return EXIT_USAGE

    health = MonitorHealth(gated=True)  # scrapes see checkpointed counts only
    detector = DetectorMetrics(rate_window=config.rate_window, hot_rate=config.hot_rate,
                               gated=True)
    renderer = None
    if not config.no_plots:
        renderer = PlotRenderer(discover_plots(config.plugin_dirs), plot_dir, ext=config.ext,
                                selected=config.plots, health=health,
                                skip_when_behind=True)  # metrics never wait for plots
        if renderer.unknown:  # the renderer has said which, in one line
            sock.close()
            renderer.shutdown()
            return EXIT_USAGE
    watcher = watcher_for(data_dir, config.glob, config.shard, use_events=not config.poll)
    quality = QualityMonitor(quality_setup, config.rate_window, config.hot_rate)
    quality_loop = QualityLoop(quality, detector, interval=min(config.interval, 5.0))
    registry = build_registry(detector, health, [quality.families])
    ingest = Ingest(config, watcher, detector, health, CheckpointStore.in_plot_dir(plot_dir),
                    renderer, on_counted=registry.collector.prepare)
    app = create_app(registry, ingest, renderer, config.auth_token, detector, quality=quality)
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, log_level=config.log_level.lower(),
        access_log=config.log_level == "DEBUG", timeout_graceful_shutdown=5))
    _handle_stop_signals(server, ingest)

    ingest.start()
    quality_loop.start()
    host = f"[{config.host}]" if ":" in config.host else config.host
    log.info("serving http://%s:%d/ (data %s, plots %s)", host, sock.getsockname()[1],
             data_dir, plot_dir)
    try:
        server.run(sockets=[sock])
    finally:
        ingest.stop()  # the checkpoint first; the quality thread may be mid-evaluation
        quality_loop.stop()
        if renderer is not None:
            renderer.shutdown()
        log.info("stopped; checkpoint written")
    return 0


def _check_directories(config: MonitorConfig) -> tuple[Path, Path]:
    data_dir = config.data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        reason = "is not a directory" if data_dir.exists() else "no such directory"
        raise StartupError(f"{config.data_dir}: data directory {reason}")
    plot_dir = config.plot_dir.expanduser().resolve()
    try:
        plot_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StartupError(f"{config.plot_dir}: cannot create the plot directory: "
                           f"{err.strerror}") from None
    if plot_dir == data_dir:
        raise StartupError(f"{config.plot_dir}: the plot directory must not be the data "
                           "directory (the data directory is only ever read)")
    return data_dir, plot_dir


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so a busy port is one clear line, not a traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise StartupError(f"--host {host}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _handle_stop_signals(server: uvicorn.Server, ingest: Ingest) -> None:
    """Our handlers outlive uvicorn's: it re-raises the signal after its graceful shutdown,
    which must not kill the process before the state is saved. Ingest stops reading at
    once, not after uvicorn has waited for open connections (up to its graceful timeout)."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        ingest.request_stop()
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
