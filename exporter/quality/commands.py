"""``larpix-monitor reference``, ``larpix-monitor checks`` and once mode's sign-off."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from exporter.errors import InputError
from exporter.quality.catalog import CHECKS
from exporter.quality.evaluate import QualityResult
from exporter.quality.grades import BAD, GRADE_NAMES
from exporter.quality.limits import ChecksConfigError, build_checks, describe_checks
from exporter.quality.masks import MaskError
from exporter.quality.monitor import QualityMonitor, setup_quality
from exporter.quality.reference import build_reference, write_reference
from exporter.quality.report import write_report
from exporter.quality.runs import RunReader

EXIT_BAD_RUN = 1
EXIT_USAGE = 2


def reference_command(files: Sequence[str], output: str, rate_window: float,
                      hot_rate: float, name: str | None = None) -> int:
    """Read a good run's files and write its per-channel reference."""
    run = RunReader(rate_window, hot_rate)
    for path in files:
        try:
            run.read(path)
        except InputError as error:
            print(error, file=sys.stderr)
            return EXIT_USAGE
    table = run.table()
    if len(table.count) == 0:
        print(f"{files[0]}: no data packets: nothing to make a reference of", file=sys.stderr)
        return EXIT_USAGE
    reference = build_reference(table, run.files, run.span(), name)
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        write_reference(reference, output)
    except OSError as error:
        print(f"{output}: cannot write the reference ({error.strerror or error})",
              file=sys.stderr)
        return EXIT_USAGE
    print(f"{output}: reference run {reference.name}: {len(table.count):,} channels, "
          f"{int(table.count.sum()):,} data packets from {len(run.files)} file(s)")
    return 0


def checks_command(checks: str | None) -> int:
    """List the checks and their limits (the defaults, or as ``--checks`` sets them)."""
    try:
        print(describe_checks(build_checks(CHECKS, checks)))
    except ChecksConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    return 0


def signoff_monitor(reference: str | None, checks: str | None, asic_configs: str | None,
                    rate_window: float, hot_rate: float) -> QualityMonitor | None:
    """The quality monitor of once mode; None (after one line on stderr) on a bad flag."""
    try:
        return QualityMonitor(setup_quality(reference, checks, asic_configs), rate_window,
                              hot_rate)
    except (ChecksConfigError, MaskError) as error:
        print(error, file=sys.stderr)
        return None


def sign_off(monitor: QualityMonitor, run: RunReader, report: str | None,
             plots: Sequence[Path] = ()) -> QualityResult:
    """Grade the run (every file read into ``run``), write the report, print the verdict."""
    spans = run.span()
    first = {g: spans[0] for g in range(256)} if spans else None
    result = monitor.evaluate(run.table(), run.files, run.detector.snapshot(), live=False,
                              first_times=first)
    problems = [g for g in result.grades if g.grade > 0]
    print(f"quality: {GRADE_NAMES[result.worst()]}"
          + (f" ({len(problems)} problem(s))" if problems else ""))
    for grade in sorted(problems, key=lambda g: (-g.grade, g.check))[:20]:
        print(f"  {GRADE_NAMES[grade.grade]} {grade.check}: {grade.reason}")
    if report is not None:
        json_path, html_path = write_report(report, result, monitor.setup.checks, run.files,
                                            run.spans, plots)
        print(f"  report: {html_path} and {json_path.name}")
    return result


def verdict_status(result: QualityResult) -> int:
    return EXIT_BAD_RUN if result.worst() == BAD else 0
