"""Chunks -> figures: plugin discovery, the render thread, pixel geometry."""

from exporter.render.discovery import PlotCatalog, discover_plots
from exporter.render.figures import PlotImage, output_path
from exporter.render.listing import list_plots_command
from exporter.render.packet_file import PacketFile
from exporter.render.renderer import PlotRenderer

__all__ = ["PacketFile", "PlotCatalog", "PlotImage", "PlotRenderer", "discover_plots",
           "list_plots_command", "output_path"]
