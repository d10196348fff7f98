"""The built-in plots, drawn the way the renderer draws them: one call per part of a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exporter.render import PacketFile, discover_plots

BUILTIN = discover_plots([]).plots


def draw(name: str, path: Path, *parts: np.ndarray):
    """The figure of built-in plot ``name`` after it has been handed each part in turn."""
    plot = BUILTIN[name]()
    fig = None
    for part in parts:
        fig = plot(str(path), PacketFile(str(path), part), fig)
    return fig
