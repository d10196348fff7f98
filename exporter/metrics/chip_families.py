"""Per-chip families of the second wave: pedestal and noise, parity, FIFO and config counts,
the io_channel -> tile join target and the clock source.

A chip is (io_group, io_channel, chip_id): ~6,400 at 2x2 scale. Counters that
are zero for most chips (FIFO flags, config packets) are exposed from their
first count, which keeps the exposition small; parity errors are exposed for
every chip that has sent a good-parity word, so a chip_id with a flipped bit
(which only ever arrives with bad parity) never becomes a series.
"""

from __future__ import annotations

import numpy as np

from exporter.metrics.chip_detail import CONFIG_COLUMNS
from exporter.metrics.snapshot import DetectorSnapshot
from exporter.packets import DATA, PARITY_TYPES, tile_of

_DEC = tuple(str(i) for i in range(256))
#: (fifo, level, fifo codes with that flag) of the 4-bit code local | shared << 2
_FIFO_CODES = tuple((fifo, level, np.flatnonzero(np.arange(16) & bit))
                    for fifo, level, bit in (("local", "half", 1), ("local", "full", 2),
                                             ("shared", "half", 4), ("shared", "full", 8)))


def chip_families(snap: DetectorSnapshot, labels: list, texts: list[str], family_type) -> list:
    """The families; ``labels``/``texts`` are the chip slots' label pairs and their text,
    ``family_type`` the ``Family`` class."""
    Family = family_type
    mean = Family("larpix_chip_adc_mean", "gauge",
                  "Mean dataword of the chip's data packets in the rate window.")
    rms = Family("larpix_chip_adc_rms", "gauge",
                 "Standard deviation (ddof 0) of the chip's datawords in the rate window.")
    n = snap.window.channel_counts.sum(axis=1)
    sums = snap.window.chip_adc
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[:, 0] / n
        spread = np.sqrt(np.maximum(n * sums[:, 1] - sums[:, 0] ** 2, 0)) / n
    means, spread = means.tolist(), spread.tolist()
    for slot in (np.flatnonzero(n[1:]) + 1).tolist():   # slot 0 is never a chip
        mean.samples.append((mean.name, labels[slot], texts[slot], means[slot]))
        rms.samples.append((rms.name, labels[slot], texts[slot], spread[slot]))

    parity = Family("larpix_chip_parity_errors", "counter",
                    "LArPix words (types 0-3) with valid_parity == 0, per chip that has sent a "
                    "good-parity word.")
    errors = snap.parity_errors[:, PARITY_TYPES].sum(axis=1)
    good = snap.packets[:, PARITY_TYPES].sum(axis=1) - errors
    name = parity.name + "_total"
    errors_list = errors.tolist()
    parity.samples = [(name, labels[s], texts[s], errors_list[s])
                      for s in (np.flatnonzero(good[1:] > 0) + 1).tolist()]

    fifo = Family("larpix_chip_fifo_flags", "counter",
                  "Data packets of the chip with a FIFO flag: bit 0 more than half full, "
                  "bit 1 full.")
    has_data = snap.packets[:, DATA] > 0
    name = fifo.name + "_total"
    for kind, level, codes in _FIFO_CODES:
        flagged = snap.fifo[:, codes].sum(axis=1)
        values = flagged.tolist()
        for slot in np.flatnonzero((flagged > 0) & has_data).tolist():
            chip, channel, group = labels[slot]
            head, tail = _split(texts[slot])
            fifo.samples.append((name, (chip, ("fifo", kind), channel, group, ("level", level)),
                                 f'{head},fifo="{kind}",{tail},level="{level}"}}',
                                 values[slot]))

    config = Family("larpix_config_packets", "counter",
                    "Config packets (types 2 write, 3 read) of the chip, by direction "
                    "(downstream_marker 1: downstream).")
    name = config.name + "_total"
    counts = snap.config.tolist()
    for slot, column in zip(*np.nonzero(snap.config), strict=True):
        chip, channel, group = labels[slot]
        op, direction = CONFIG_COLUMNS[column]
        head, tail = _split(texts[slot])
        config.samples.append((name, (chip, ("direction", direction), channel, group,
                                      ("op", op)),
                               f'{head},direction="{direction}",{tail},op="{op}"}}',
                               counts[slot][column]))
    return [mean, rms, parity, fifo, config, *_io_channel_and_clock(snap, Family)]


def _io_channel_and_clock(snap: DetectorSnapshot, Family) -> list:
    info = Family("larpix_io_channel_info", "gauge",
                  "1 for every io_channel seen, labelled with its tile: the join target for "
                  "per-tile sums.")
    pairs = np.unique(snap.chip_group[1:].astype(np.int64) << 8 | snap.chip_channel[1:])
    for key in pairs[(pairs & 0xFF) > 0].tolist():
        channel = key & 0xFF
        info.add((("io_channel", _DEC[channel]), ("io_group", _DEC[key >> 8]),
                  ("tile", str(int(tile_of(np.array([channel]))[0])))), 1)
    clock = Family("larpix_clock_source", "gauge",
                   "Clock source (dataword) of the latest sync packet.")
    for group in np.flatnonzero(snap.has_clock_source).tolist():
        clock.add((("io_group", _DEC[group]),), int(snap.clock_source[group]))
    return [info, clock]


def _split(chip_text: str) -> tuple[str, str]:
    """``{chip_id="c"`` and ``io_channel="x",io_group="g"`` of a chip's label text, so that
    labels sorting between and after them can be put in without sorting again."""
    head, _, tail = chip_text.partition(",")
    return head, tail[:-1]
