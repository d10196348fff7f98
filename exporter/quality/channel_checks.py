"""Per-channel checks: each channel of a tile judged alone, the tile graded by the fraction.

Channels masked in the ASIC configs are never candidates: they are ``disabled``.
"""

from __future__ import annotations

import numpy as np

from exporter.quality.checks import ChannelCheck, CheckContext, Judged
from exporter.quality.robust import MIN_WIDTH


class HotChannels(ChannelCheck):
    name = "hot_channels"
    status = "hot"
    verb = "above the hot rate"
    description = ("channels whose data rate over the rate window is above --hot-rate; "
                   "tile graded by their fraction")
    defaults = {"warning": 0.005, "bad": 0.02, "min_judged_fraction": 0.0}

    def judge(self, context: CheckContext) -> Judged:
        view = context.view
        candidates = ~view.disabled
        seen = candidates & (view.count > 0)
        return Judged(candidates, seen, seen & (view.rate_hz > context.hot_rate))


class _RateCheck(ChannelCheck):
    """Compares a channel's count now with what its reference rate leads to expect."""

    needs_reference = True

    def _judged(self, context: CheckContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates (enabled, alive in the reference), judged (at least ``min_expected``
        packets expected) and the expected packets."""
        view = context.view
        expected = context.expected()
        candidates = ~view.disabled & (view.ref_count > 0)
        return candidates, candidates & (expected >= self.limits["min_expected"]), expected


class DeadChannels(_RateCheck):
    name = "dead_channels"
    status = "dead"
    verb = "dead"
    description = ("channels alive in the reference and silent now, judged once at least "
                   "min_expected packets were expected from the reference")
    defaults = {"warning": 0.005, "bad": 0.02, "min_expected": 10.0, "min_judged_fraction": 0.5}

    def judge(self, context: CheckContext) -> Judged:
        candidates, judged, _ = self._judged(context)
        return Judged(candidates, judged, judged & (context.view.count == 0))


class HotVersusReference(_RateCheck):
    name = "hot_vs_reference"
    status = "hot"
    verb = "far above their reference rate"
    description = ("channels with factor times their reference rate or more, and at least "
                   "significance sigmas (Poisson) above it")
    defaults = {"warning": 0.002, "bad": 0.01, "factor": 5.0, "significance": 5.0,
                "min_expected": 5.0, "min_judged_fraction": 0.5}

    def judge(self, context: CheckContext) -> Judged:
        view = context.view
        candidates, judged, expected = self._judged(context)
        excess = view.count - expected
        flagged = (judged & (view.count >= self.limits["factor"] * expected)
                   & (excess >= self.limits["significance"] * np.sqrt(expected)))
        return Judged(candidates, judged, flagged)


class _AdcCheck(ChannelCheck):
    """Compares a channel's robust pedestal/noise now with its reference's."""

    needs_reference = True

    def _judged(self, context: CheckContext) -> tuple[np.ndarray, np.ndarray]:
        view = context.view
        enough = self.limits["min_packets"]
        candidates = ~view.disabled & (view.ref_count >= enough) & np.isfinite(view.ref_pedestal)
        judged = candidates & (view.count >= enough) & np.isfinite(view.pedestal)
        return candidates, judged


class ShiftedPedestal(_AdcCheck):
    name = "shifted_channels"
    status = "shifted"
    verb = "with a shifted pedestal"
    description = ("channels whose pedestal (clipped mean of the ADC) moved by more than "
                   "k times their reference noise (clipped width)")
    defaults = {"warning": 0.01, "bad": 0.05, "k": 3.0, "min_packets": 20.0,
                "min_judged_fraction": 0.5}

    def judge(self, context: CheckContext) -> Judged:
        view = context.view
        candidates, judged = self._judged(context)
        with np.errstate(invalid="ignore"):
            moved = np.abs(view.pedestal - view.ref_pedestal)
            flagged = judged & (moved > self.limits["k"] * np.fmax(view.ref_noise, MIN_WIDTH))
        return Judged(candidates, judged, flagged)


class NoisyChannels(_AdcCheck):
    name = "noisy_channels"
    status = "noisy"
    verb = "noisy"
    description = ("channels whose noise (clipped width of the ADC) is above factor times "
                   "their reference noise and at least min_increase ADC counts more")
    defaults = {"warning": 0.01, "bad": 0.05, "factor": 1.6, "min_increase": 0.5,
                "min_packets": 20.0, "min_judged_fraction": 0.5}

    def judge(self, context: CheckContext) -> Judged:
        view = context.view
        candidates, judged = self._judged(context)
        reference = np.fmax(view.ref_noise, MIN_WIDTH)
        with np.errstate(invalid="ignore"):
            flagged = (judged & (view.noise > self.limits["factor"] * reference)
                       & (view.noise - reference >= self.limits["min_increase"]))
        return Judged(candidates, judged, flagged)
