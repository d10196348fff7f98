"""Every check, in the order they are listed and reported: add a new check's class here."""

from __future__ import annotations

from exporter.quality.channel_checks import (
    DeadChannels,
    HotChannels,
    HotVersusReference,
    NoisyChannels,
    ShiftedPedestal,
)
from exporter.quality.checks import Check
from exporter.quality.run_checks import (
    FifoFull,
    ParityErrors,
    QuietChips,
    Staleness,
    SyncDrift,
    SyncMissing,
)

CHECKS: tuple[type[Check], ...] = (
    ParityErrors, FifoFull, HotChannels, QuietChips, SyncDrift, SyncMissing, Staleness,
    DeadChannels, HotVersusReference, ShiftedPedestal, NoisyChannels,
)
