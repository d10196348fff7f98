"""Pedestal and noise maps: ADC mean and ADC RMS of every pixel of every tile with data.

Beside ``PixelMaps`` (the hit rate), on the same layout and panel grid: a pixel
whose pedestal moved, or whose noise grew, stands out of its tile. The ADC RMS
is the standard deviation (ddof 0) of the channel's ADC values, as in
``/api/channels``. One colour scale per figure, fitted to every tile shown.
"""

from __future__ import annotations

from plotters._bases import EveryTileMap


class PedestalMaps(EveryTileMap):
    """Mean ADC of every pixel of every tile with data: the pedestal map."""

    what = "Pedestal (ADC mean) per pixel"
    quantity = "mean"
    label = "ADC mean [counts]"


class NoiseMaps(EveryTileMap):
    """ADC standard deviation of every pixel of every tile with data: the noise map."""

    what = "Noise (ADC RMS) per pixel"
    quantity = "std"
    label = "ADC RMS [counts]"
