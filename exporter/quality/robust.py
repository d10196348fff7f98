"""Pedestal and noise of many channels from their ADC histograms, at once.

A channel's ADC values are its pedestal (a narrow Gaussian) plus a signal tail
reaching far above it. The plain mean and standard deviation follow the tail;
these estimators do not: start from the median and a width from the
inter-quartile range, then take the mean and width of the values within
``CLIP_SIGMAS`` widths of the centre, twice. Every step is a vectorised pass
over the ``(channels, 256)`` histogram array.
"""

from __future__ import annotations

from math import erf

import numpy as np

#: Values further than this many widths from the centre are left out.
CLIP_SIGMAS = 3.0
#: Re-centring passes after the median/IQR start.
CLIP_PASSES = 2
#: Inter-quartile range of a unit Gaussian: IQR / this = sigma.
_IQR_PER_SIGMA = 1.3489795
#: Lower bound of a width in ADC counts: a pedestal sitting on one ADC value has width 0,
#: but one count of quantisation noise (sigma of a uniform step) is always there.
MIN_WIDTH = 1 / np.sqrt(12)
#: Standard deviation of a unit Gaussian cut at +-CLIP_SIGMAS (put back after clipping).
_CLIPPED_STD = float(np.sqrt(1 - 2 * CLIP_SIGMAS * np.exp(-CLIP_SIGMAS**2 / 2) / np.sqrt(2 * np.pi)
                             / erf(CLIP_SIGMAS / np.sqrt(2))))


def quantile(hist: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each row's values, interpolated within the crossing bin.

    Bin ``v`` holds the value ``v``, spread uniformly over ``[v - 0.5, v + 0.5)``.
    Rows without entries give NaN.
    """
    counts = hist.astype(np.float64)
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    target = q * total
    crossing = np.argmax(cumulative >= target[:, None], axis=1)
    rows = np.arange(len(hist))
    before = cumulative[rows, crossing] - counts[rows, crossing]
    inside = np.divide(target - before, counts[rows, crossing],
                       out=np.zeros_like(target), where=counts[rows, crossing] > 0)
    value = crossing - 0.5 + inside
    return np.where(total > 0, value, np.nan)


def pedestal_and_noise(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clipped mean and width of every row of ``hist`` (channels x ADC values).

    NaN for rows without entries.
    """
    hist = np.asarray(hist)
    if hist.ndim != 2:
        raise ValueError("hist must be (channels, values)")
    values = np.arange(hist.shape[1], dtype=np.float64)
    counts = hist.astype(np.float64)
    centre = quantile(hist, 0.5)
    width = np.maximum((quantile(hist, 0.75) - quantile(hist, 0.25)) / _IQR_PER_SIGMA,
                       MIN_WIDTH)
    for _ in range(CLIP_PASSES):
        centre, width = _clipped(counts, values, centre, width)
    return centre, width


def _clipped(counts: np.ndarray, values: np.ndarray, centre: np.ndarray,
             width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the values within CLIP_SIGMAS widths of ``centre``.

    The window always keeps the centre's own bin, so a channel whose values all
    sit on one ADC value keeps them.
    """
    half = np.maximum(CLIP_SIGMAS * width, 0.5)
    inside = np.abs(values[None, :] - centre[:, None]) <= half[:, None]
    kept = np.where(inside, counts, 0.0)
    n = kept.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = kept @ values / n
        variance = kept @ (values**2) / n - mean**2
    std = np.sqrt(np.maximum(variance, 0.0)) / _CLIPPED_STD
    keep = n > 0
    return np.where(keep, mean, centre), np.where(keep, np.maximum(std, MIN_WIDTH), width)
