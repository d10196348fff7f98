"""Chunks -> Prometheus metrics: the detector model, the monitor's health, the exposition."""

from exporter.metrics.collector import (
    MetricsCollector,
    MonitorRegistry,
    build_registry,
    exposition,
)
from exporter.metrics.detector import DetectorMetrics
from exporter.metrics.health import MonitorHealth

__all__ = ["DetectorMetrics", "MetricsCollector", "MonitorHealth", "MonitorRegistry",
           "build_registry", "exposition"]

# Families made downstream (the quality checks' results) join the exposition through this.
from exporter.metrics.collector import FamilySource  # noqa: E402
from exporter.metrics.families import Family  # noqa: E402

__all__ += ["Family", "FamilySource"]
