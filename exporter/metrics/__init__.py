"""Chunks -> Prometheus metrics and per-channel tables: the detector model, the monitor's
health, the exposition."""

from exporter.metrics.channels import ChannelTable, ChannelTables
from exporter.metrics.collector import (
    MetricsCollector,
    MonitorRegistry,
    build_registry,
    exposition,
)
from exporter.metrics.detector import DetectorMetrics
from exporter.metrics.health import MonitorHealth

__all__ = ["ChannelTable", "ChannelTables", "DetectorMetrics", "MetricsCollector",
           "MonitorHealth", "MonitorRegistry", "build_registry", "exposition"]

# Families made downstream (the quality checks' results) join the exposition through this.
from exporter.metrics.collector import FamilySource  # noqa: E402
from exporter.metrics.families import Family  # noqa: E402

__all__ += ["Family", "FamilySource"]
