"""Quality results -> metric families: ``larpix_quality`` and ``larpix_channels``.

``QualityFamilies`` is a ``FamilySource`` for the metrics collector: it holds
the latest result and a version that changes with it, so the collector renders
these families only when a new evaluation arrived.
"""

from __future__ import annotations

import threading

from exporter.metrics import Family
from exporter.quality.evaluate import STATUSES, QualityResult


def quality_families(result: QualityResult | None) -> list[Family]:
    quality = Family("larpix_quality", "gauge",
                     "Quality check grade per tile (tile 0: the io_group as a whole): "
                     "-1 not enough data, 0 good, 1 warning, 2 bad.")
    channels = Family("larpix_channels", "gauge",
                      "Channels per status (ok, disabled, dead, hot, shifted, noisy) per tile.")
    if result is None:
        return [quality, channels]
    for grade in sorted(result.grades, key=lambda g: (g.check, g.io_group, g.tile)):
        quality.add((("check", grade.check), ("io_group", str(grade.io_group)),
                     ("tile", str(grade.tile))), grade.grade)
    for (group, tile), counts in sorted(result.channels.items()):
        for status in sorted(STATUSES):
            channels.add((("io_group", str(group)), ("status", status), ("tile", str(tile))),
                         counts[status])
    return [quality, channels]


class QualityFamilies:
    """The latest quality result, as families the collector renders."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result: QualityResult | None = None
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    @property
    def result(self) -> QualityResult | None:
        return self._result

    def set(self, result: QualityResult) -> None:
        with self._lock:
            self._result = result
            self._version += 1

    def families(self) -> list[Family]:
        with self._lock:
            return quality_families(self._result)
