"""The plot API of larpix-monitor 1.0, kept for plugins and scripts that import it.

New code imports from ``exporter.render``.
"""

from exporter.render import (
    PacketFile,
    PlotCatalog,
    PlotImage,
    PlotRenderer,
    discover_plots,
    list_plots_command,
    output_path,
)

__all__ = ["PacketFile", "PlotCatalog", "PlotImage", "PlotRenderer", "discover_plots",
           "list_plots_command", "output_path"]
