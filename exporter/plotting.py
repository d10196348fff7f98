"""Plots: plugin discovery (``PlotCatalog``) and the single-thread ``PlotRenderer``.

Discovery lives in ``exporter.plugins``, rendering in ``exporter.rendering``;
this module is the one the rest of the monitor imports.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from exporter.plugins import PlotCatalog, discover_plots
from exporter.rendering import PacketFile, PlotImage, PlotRenderer, output_path

__all__ = [
    "PacketFile",
    "PlotCatalog",
    "PlotImage",
    "PlotRenderer",
    "discover_plots",
    "list_plots_command",
    "output_path",
]


def _origin(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    where = getattr(module, "__file__", None) or cls.__module__
    return cls.__module__ if cls.__module__.startswith("plotters.") else str(where)


def list_plots_command(plugin_dirs: list[Path]) -> int:
    """``larpix-monitor plots``: what loaded (name, module), what failed and why."""
    catalog = discover_plots(plugin_dirs)
    width = max((len(name) for name in catalog.plots), default=0)
    for name, cls in sorted(catalog.plots.items()):
        doc = (inspect.cleandoc(vars(cls).get("__doc__") or "")).split("\n")[0]
        on_request = "" if getattr(cls, "default", True) else "  (only with --plots)"
        print(f"{name:<{width}}  {_origin(cls)}{on_request}" + (f"  {doc}" if doc else ""))
    for where, reason in sorted(catalog.failures.items()):
        print(f"FAILED {where}: {reason}")
    return 1 if catalog.failures else 0
