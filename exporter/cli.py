"""Command line: ``larpix-monitor {serve,once,demo,simulate,plots}`` and ``run_monitor.py``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from exporter import DEFAULT_PORT, __version__
from exporter.config import (
    DEFAULT_HOT_RATE,
    DEFAULT_RATE_WINDOW,
    NETWORK_DIR_ENV,
    PLOT_EXTENSIONS,
    MonitorConfig,
    plugin_dirs_from_env,
)
from exporter.source.shard import Shard


def _add_plot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", "--plot-dir", dest="plot_dir", required=True,
                   help="directory for the figures (PLOT_DIR/<stem>_dqm/<stem>_<Plot><ext>)")
    p.add_argument("--ext", default=".png", choices=PLOT_EXTENSIONS, help="figure file type")
    p.add_argument("--plots", nargs="+", metavar="NAME", help="only these plots (default: all)")
    p.add_argument("--plugin-dir", action="append", metavar="DIR",
                   help="extra directory of plot modules (repeatable)")
    p.add_argument("--network", type=_directory, metavar="DIR",
                   help="the DAQ's hydra-network JSON files (larpix-control controller "
                        f"configs) for the NetworkMap plot (env {NETWORK_DIR_ENV})")


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return path.resolve()


def _export_network_dir(args: argparse.Namespace) -> None:
    """Plots are constructed without arguments (the seed's contract): they read the environment."""
    if getattr(args, "network", None):
        os.environ[NETWORK_DIR_ENV] = str(args.network)


def _rate_window(text: str) -> float:
    """The window holds one slot per second, so it is kept to a sane range."""
    value = float(text)
    if not 1 <= value <= 120:
        raise argparse.ArgumentTypeError("must be between 1 and 120 seconds")
    return value


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate-window", type=_rate_window, default=DEFAULT_RATE_WINDOW, metavar="S",
                   help="seconds of data time behind the *_rate_hz and channel gauges")
    p.add_argument("--hot-rate", type=float, default=DEFAULT_HOT_RATE, metavar="HZ",
                   help="a channel above this data rate counts as hot")


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=float, default=30.0,
                   help="seconds between plot refreshes of a changed file")
    p.add_argument("--flush_interval", "--flush-interval", dest="flush_interval", type=float,
                   default=1800.0,
                   help="close a file's figures after this many idle seconds; also the age "
                        "below which a file without saved state is read from its start")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--glob", default="*.h5", help="file name pattern to watch")
    p.add_argument("--read-all", action="store_true",
                   help="at start-up read every matching file from its start, however old")
    p.add_argument("--poll", action="store_true",
                   help="poll the directory instead of using file events (network file systems)")
    p.add_argument("--auth-token", default=os.environ.get("LARPIX_MONITOR_AUTH_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (env LARPIX_MONITOR_AUTH_TOKEN)")
    p.add_argument("--auth-token-file", metavar="F",
                   help="as --auth-token, the token read from file F (kept out of ps)")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--no-plots", action="store_true", help="metrics only")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="read only the files whose name hashes to K of N (N exporters, one "
                        "directory; see docs/scaling.md)")


def _add_quality_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", metavar="REF.h5",
                   help="reference run for the quality checks ('larpix-monitor reference')")
    p.add_argument("--checks", metavar="CHECKS.yaml",
                   help="quality check limits (default: the documented set, docs/quality.md)")
    p.add_argument("--asic-configs", metavar="DIR",
                   help="directory of ASIC config JSONs: masked channels are 'disabled'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="larpix-monitor",
        description="Live data-quality monitor for LArPix HDF5 files.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="watch a data directory and serve metrics and plots")
    serve.add_argument("-i", "--input", dest="data_dir", required=True,
                       help="data directory to watch")
    _add_plot_options(serve)
    _add_serve_options(serve)
    _add_metric_options(serve)
    _add_quality_options(serve)

    once = sub.add_parser("once", help="read whole files once: summary, metrics file, plots")
    once.add_argument("files", nargs="+", metavar="FILE")
    _add_plot_options(once)
    once.add_argument("--metrics-file", metavar="OUT.prom",
                      help="write the metrics in Prometheus text format")
    once.add_argument("--no-plots", action="store_true", help="skip the plots")
    once.add_argument("--channels", metavar="OUT.csv",
                      help="write the per-channel table of every file as CSV")
    once.add_argument("--disable-list", metavar="OUT.json",
                      help="write the channels above --hot-rate over the whole file, in the "
                           "DAQ's disable-list format")
    _add_metric_options(once)
    _add_quality_options(once)
    once.add_argument("--report", metavar="DIR",
                      help="write the run's sign-off (report.json, report.html); exit 1 when "
                           "a quality check grades something bad")

    demo = sub.add_parser("demo", help="simulate a live run and serve it")
    demo.add_argument("--port", type=int, default=DEFAULT_PORT)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--rate", type=float, default=20_000.0, help="simulated packets/s per file")
    demo.add_argument("--run-seconds", type=float, default=180.0,
                      help="seconds before the simulated DAQ starts a new run (new files)")
    demo.add_argument("--dir", help="directory for the simulated data (default: a temporary one)")
    demo.add_argument("--interval", type=float, default=5.0, help="plot refresh interval")

    sim = sub.add_parser("simulate", help="write a simulated LArPix file with its ground truth")
    sim.add_argument("path", metavar="OUT.h5")
    sim.add_argument("--format", choices=["packet", "raw"], default="packet")
    sim.add_argument("--packets", type=int, help="write this many packets at once")
    sim.add_argument("--rate", type=float, help="append live at this many packets/s ...")
    sim.add_argument("--duration", type=float, help="... for this many seconds")
    sim.add_argument("--seed", type=int, default=0)

    plots = sub.add_parser("plots", help="list the available plots")
    plots.add_argument("--plugin-dir", action="append", metavar="DIR")

    ref = sub.add_parser("reference", help="write the per-channel reference of a good run")
    ref.add_argument("files", nargs="+", metavar="RUN.h5")
    ref.add_argument("-o", "--output", required=True, metavar="REF.h5")
    ref.add_argument("--name", help="the reference run's name in reasons (default: file stem)")
    _add_metric_options(ref)

    checks = sub.add_parser("checks", help="list the quality checks and their limits")
    checks.add_argument("--checks", metavar="CHECKS.yaml")
    return parser


def _serve_config(args: argparse.Namespace) -> MonitorConfig:
    return MonitorConfig(
        data_dir=Path(args.data_dir), plot_dir=Path(args.plot_dir), interval=args.interval,
        flush_interval=args.flush_interval, ext=args.ext, plots=args.plots,
        plugin_dirs=plugin_dirs_from_env(args.plugin_dir), host=args.host, port=args.port,
        glob=args.glob, rate_window=args.rate_window, hot_rate=args.hot_rate,
        read_all=args.read_all, poll=args.poll, auth_token=args.auth_token,
        log_level=args.log_level, no_plots=args.no_plots,
        reference=getattr(args, "reference", None), checks=getattr(args, "checks", None),
        asic_configs=getattr(args, "asic_configs", None), shard=args.shard)


def _read_token(path: str) -> str | None:
    """The token of ``--auth-token-file``, or None after one line saying why not."""
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        print(f"{path}: cannot read the auth token file "
              f"({getattr(err, 'strerror', None) or err})", file=sys.stderr)
        return None
    if not token:
        print(f"{path}: the auth token file is empty", file=sys.stderr)
        return None
    return token


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from exporter.service import serve
        if args.auth_token_file:
            token = _read_token(args.auth_token_file)
            if token is None:
                return 2
            args.auth_token = token
        return serve(_serve_config(args))
    if args.command == "once":
        from exporter.once import QualityFlags, run_once
        wanted = args.reference or args.checks or args.asic_configs or args.report
        return run_once(
            [Path(f) for f in args.files], plot_dir=Path(args.plot_dir), ext=args.ext,
            plots=args.plots, plugin_dirs=plugin_dirs_from_env(args.plugin_dir),
            metrics_file=Path(args.metrics_file) if args.metrics_file else None,
            no_plots=args.no_plots, rate_window=args.rate_window, hot_rate=args.hot_rate,
            channels_file=Path(args.channels) if args.channels else None,
            disable_list_file=Path(args.disable_list) if args.disable_list else None,
            quality=QualityFlags(args.reference, args.checks, args.asic_configs, args.report)
            if wanted else None)
    if args.command == "reference":
        from exporter.quality.commands import reference_command
        return reference_command(args.files, args.output, args.rate_window, args.hot_rate,
                                 args.name)
    if args.command == "checks":
        from exporter.quality.commands import checks_command
        return checks_command(args.checks)
    if args.command == "demo":
        from exporter.demo import run_demo
        return run_demo(args)
    if args.command == "simulate":
        from exporter.simulate import simulate_command
        return simulate_command(args)
    if args.command == "plots":
        from exporter.render import list_plots_command
        return list_plots_command(plugin_dirs_from_env(args.plugin_dir))
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _export_network_dir(args)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = _run(args)
    if args.command in ("serve", "demo"):
        _end_service_process(code)
    return code


def _end_service_process(code: int) -> NoReturn:
    """Leave a service process once ``serve`` has saved its state, without the
    interpreter's teardown. A daemon thread still at work then (a quality evaluation
    opening a data file for its ASIC masks, an ingest thread that did not stop in time)
    may be inside h5py: the teardown frees h5py objects, which waits for h5py's global
    lock, and that thread never gives it back. The process would hang, or crash, instead
    of exiting."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_seed_parser() -> argparse.ArgumentParser:
    """The seed's flags, unchanged: ``-i -o --interval --flush_interval --ext --plots --once``."""
    p = argparse.ArgumentParser(
        prog="run_monitor.py",
        description="larpix-monitor, seed-compatible entry point "
                    "(same as 'larpix-monitor serve' or 'larpix-monitor once').")
    p.add_argument("-i", "--input", dest="data_dir", help="data directory to monitor")
    p.add_argument("--once", metavar="FILE", help="generate the plots of one file and exit")
    _add_plot_options(p)
    _add_serve_options(p)
    _add_metric_options(p)
    return p


def run_monitor_main(argv: list[str] | None = None) -> int:
    parser = build_seed_parser()
    args = parser.parse_args(argv)
    _export_network_dir(args)
    if args.once:
        return main(["once", args.once, "-o", args.plot_dir, "--ext", args.ext]
                    + (["--plots", *args.plots] if args.plots else [])
                    + [x for d in (args.plugin_dir or []) for x in ("--plugin-dir", d)])
    if not args.data_dir:
        parser.error("one of -i DATA_DIR or --once FILE is required")
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from exporter.service import serve
    _end_service_process(serve(_serve_config(args)))


if __name__ == "__main__":
    sys.exit(main())
