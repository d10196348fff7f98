"""Quality checks: every tile graded good / warning / bad against limits and a reference run.

Data flows ``metrics (per-channel table, detector snapshot) -> quality -> {web, disk}``:
this package reads what the metrics counted; the metrics never import it.
"""

from exporter.quality.catalog import CHECKS
from exporter.quality.checks import ChannelCheck, Check, CheckContext, GroupState, Judged
from exporter.quality.evaluate import STATUSES, QualityResult, channel_status, evaluate
from exporter.quality.grades import BAD, GOOD, GRADE_NAMES, NOT_ENOUGH_DATA, WARNING, TileGrade
from exporter.quality.limits import ChecksConfigError, build_checks, describe_checks
from exporter.quality.masks import ChannelMasks, MaskError, masks_from_directory, masks_from_file
from exporter.quality.monitor import QualityMonitor, QualitySetup, setup_quality
from exporter.quality.reference import (
    Reference,
    ReferenceError,
    build_reference,
    load_reference,
    write_reference,
)
from exporter.quality.table import ChannelColumns, RunChannels

__all__ = [
    "BAD", "CHECKS", "GOOD", "GRADE_NAMES", "NOT_ENOUGH_DATA", "STATUSES", "WARNING",
    "ChannelCheck", "ChannelColumns", "ChannelMasks", "Check", "CheckContext",
    "ChecksConfigError", "GroupState", "Judged", "MaskError", "QualityMonitor", "QualityResult",
    "QualitySetup", "Reference",
    "ReferenceError", "RunChannels", "TileGrade", "build_checks", "build_reference",
    "channel_status", "describe_checks", "evaluate", "load_reference", "masks_from_directory",
    "masks_from_file", "setup_quality", "write_reference",
]
