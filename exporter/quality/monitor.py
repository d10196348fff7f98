"""The quality checks as the service and once mode run them: set up from the flags,
evaluated on a run's per-channel table and the detector's io_group state, published
as metric families and as the document of ``/api/quality``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporter.quality.catalog import CHECKS
from exporter.quality.checks import Check, GroupState
from exporter.quality.evaluate import QualityResult, evaluate
from exporter.quality.families import QualityFamilies
from exporter.quality.limits import build_checks
from exporter.quality.masks import ChannelMasks, MaskError, masks_from_directory, masks_from_file
from exporter.quality.reference import Reference, ReferenceError, load_reference
from exporter.quality.table import ChannelColumns, RunChannels

log = logging.getLogger(__name__)


@dataclass
class QualitySetup:
    """What ``--reference``, ``--checks`` and ``--asic-configs`` gave."""

    checks: list[Check]
    reference: Reference | None
    reference_problem: str | None
    asic_masks: ChannelMasks | None


def setup_quality(reference: str | Path | None = None, checks: str | Path | None = None,
                  asic_configs: str | Path | None = None) -> QualitySetup:
    """Load the checks (ChecksConfigError and MaskError are the caller's to report: a
    wrong flag stops the program); a reference that cannot be used is logged in one
    line and its checks report "not enough data"."""
    configured = build_checks(CHECKS, checks)
    masks = masks_from_directory(asic_configs) if asic_configs is not None else None
    loaded, problem = None, None
    if reference is not None:
        try:
            loaded = load_reference(reference)
        except ReferenceError as error:
            problem = str(error)
            log.error("%s", problem)
    return QualitySetup(configured, loaded, problem, masks)


class GroupTracker:
    """io_group state for the run-wide checks: data seconds since the first seen, and
    wall time since the data time last moved (staleness, live only)."""

    def __init__(self) -> None:
        self._first: dict[int, int] = {}
        self._last: dict[int, tuple[int, float]] = {}

    def states(self, snap, now: float, live: bool,
               first_times: Mapping[int, int] | None = None) -> dict[int, GroupState]:
        out = {}
        for group in np.flatnonzero(snap.window.has_window).tolist():
            stamp = int(snap.data_timestamp[group])
            first = self._first.setdefault(group, (first_times or {}).get(group, stamp))
            seen = self._last.get(group)
            if seen is None or seen[0] != stamp:
                self._last[group] = seen = (stamp, now)
            out[group] = GroupState(
                sync_offset=int(snap.sync_offset[group]) if snap.has_sync_offset[group] else None,
                sync_gaps=int(snap.sync_gaps[group]), data_seconds=max(stamp - first, 0),
                stale_seconds=now - seen[1] if live else None)
        return out


class QualityMonitor:
    """Runs the checks on demand and keeps the latest result for metrics and HTTP."""

    def __init__(self, setup: QualitySetup, rate_window: float, hot_rate: float) -> None:
        self.setup = setup
        self.rate_window = rate_window
        self.hot_rate = hot_rate
        self.families = QualityFamilies()
        self.groups = GroupTracker()
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None
        self._masks: dict[str, tuple[tuple[float, int], ChannelMasks]] = {}

    def masks_for(self, paths: Sequence[str | Path]) -> ChannelMasks:
        """The files' own masks (configs, daq_configs), then --asic-configs over them."""
        masks = ChannelMasks()
        for path in paths:
            masks.update(self._file_masks(Path(path)))
        if self.setup.asic_masks is not None:
            masks.update(self.setup.asic_masks)
        return masks

    def _file_masks(self, path: Path) -> ChannelMasks:
        try:
            stat = path.stat()
            version = (stat.st_mtime, stat.st_size)
            cached = self._masks.get(str(path))
            if cached is not None and cached[0] == version:
                return cached[1]
            masks = masks_from_file(path)
        except (OSError, MaskError, KeyError, ValueError) as error:
            log.warning("%s: ASIC configs not read (%s)", path, error)
            return ChannelMasks()
        self._masks[str(path)] = (version, masks)
        return masks

    def evaluate(self, table: ChannelColumns, paths: Sequence[str | Path], snap=None, *,
                 live: bool = True, now: float | None = None,
                 first_times: Mapping[int, int] | None = None) -> QualityResult:
        """Grade the run of the files ``paths`` (oldest first) whose table is ``table``."""
        now = time.time() if now is None else now
        groups = self.groups.states(snap, now, live, first_times) if snap is not None else {}
        result = evaluate(self.setup.checks, RunChannels.from_columns(table),
                          rate_window=self.rate_window, hot_rate=self.hot_rate,
                          reference=self.setup.reference,
                          reference_problem=self.setup.reference_problem,
                          masks=self.masks_for(paths), groups=groups)
        document = {"evaluated": True, "updated": now,
                    "files": [Path(p).stem for p in paths], **result.as_dict()}
        with self._lock:
            self._document = document
        self.families.set(result)
        return result

    def document(self) -> dict[str, Any] | None:
        with self._lock:
            return self._document

