"""The quality package's parts on tables built here from plain numpy, and on files
written by larpix-control's own writers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from larpix import Chip, Key
from larpix.format import hdf5format
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry
from exporter.quality import (
    BAD,
    CHECKS,
    GOOD,
    NOT_ENOUGH_DATA,
    WARNING,
    ChecksConfigError,
    ReferenceError,
    RunChannels,
    build_checks,
    build_reference,
    describe_checks,
    evaluate,
    load_reference,
    masks_from_directory,
    masks_from_file,
    write_reference,
)
from exporter.quality.families import QualityFamilies
from exporter.quality.masks import mask_from_json, masks_from_tar
from exporter.quality.robust import pedestal_and_noise
from exporter.quality.table import channel_key


def histograms(values: np.ndarray) -> np.ndarray:
    """(channels, samples) of ADC values -> (channels, 256) counts."""
    rows = np.repeat(np.arange(len(values)), values.shape[1])
    out = np.zeros((len(values), 256), np.int64)
    np.add.at(out, (rows, np.clip(values, 0, 255).ravel()), 1)
    return out


def test_pedestal_and_noise_are_not_fooled_by_the_signal_tail() -> None:
    rng = np.random.default_rng(3)
    n, samples = 4000, 400
    pedestal = rng.uniform(50, 100, n)
    noise = rng.uniform(1.5, 5, n)
    values = np.rint(pedestal[:, None] + noise[:, None] * rng.standard_normal((n, samples)))
    tail = rng.random((n, samples)) < 0.1
    values = (values + tail * rng.exponential(40, (n, samples))).astype(np.int64)
    found_pedestal, found_noise = pedestal_and_noise(histograms(values))
    plain_mean = values.mean(axis=1)
    assert np.median(np.abs(plain_mean - pedestal)) > 3          # the tail moves the mean
    assert np.median(np.abs(found_pedestal - pedestal)) < 0.5    # not the clipped mean
    assert abs(np.median(found_noise / noise) - 1) < 0.1
    assert abs(np.median(values.std(axis=1) / noise) - 1) > 1    # the tail widens the RMS


def test_channels_without_data_have_no_pedestal() -> None:
    pedestal, noise = pedestal_and_noise(np.zeros((2, 256), np.int64))
    assert np.isnan(pedestal).all() and np.isnan(noise).all()


def table(io_group, io_channel, chip, channel, count, rate=None, adc=None):
    """A per-channel table of plain numpy columns; ``adc`` (channels, samples) values."""
    n = len(count)
    hist = histograms(adc) if adc is not None else np.zeros((n, 256), np.int64)
    if adc is None:
        hist[:, 75] = count
    return SimpleNamespace(
        io_group=np.asarray(io_group), io_channel=np.asarray(io_channel),
        chip_id=np.asarray(chip), channel_id=np.asarray(channel), count=np.asarray(count),
        rate_hz=np.zeros(n) if rate is None else np.asarray(rate, float),
        parity_errors=np.zeros(n, int), fifo_full=np.zeros(n, int), adc_histogram=hist)


def one_tile(counts: np.ndarray, io_group: int = 1, tile: int = 3):
    """6,400 channels of one tile: chips 11-110, four io_channels."""
    index = np.arange(6400)
    chip = 11 + index // 64
    io_channel = (tile - 1) * 4 + 1 + (chip - 11) * 4 // 100
    return table(np.full(6400, io_group), io_channel, chip, index % 64, counts)


def test_dead_channels_are_counted_per_tile_with_the_reason(tmp_path) -> None:
    reference = build_reference(one_tile(np.full(6400, 100)), ["good.h5"], (0, 9), name="X")
    counts = np.full(6400, 100)
    counts[:41] = 0
    result = evaluate(build_checks(CHECKS), RunChannels.from_columns(one_tile(counts)),
                      rate_window=10, hot_rate=20, reference=reference)
    (dead,) = [g for g in result.grades if g.check == "dead_channels"]
    assert (dead.io_group, dead.tile, dead.grade) == (1, 3, WARNING)
    assert dead.reason == "io_group 1 tile 3: 41 of 6,400 channels dead vs reference run X"
    assert result.channels[(1, 3)]["dead"] == 41 and result.channels[(1, 3)]["ok"] == 6359


def test_without_a_reference_its_checks_say_not_enough_data() -> None:
    result = evaluate(build_checks(CHECKS), RunChannels.from_columns(one_tile(np.full(6400, 5))),
                      rate_window=10, hot_rate=20, reference_problem="ref.h5: no such file")
    needing = {c.name for c in build_checks(CHECKS) if c.needs_reference}
    grades = [g for g in result.grades if g.check in needing]
    assert {g.check for g in grades} == needing
    assert all(g.grade == NOT_ENOUGH_DATA and g.reason.endswith("ref.h5: no such file")
               for g in grades)


def test_a_reference_of_another_detector_is_not_used() -> None:
    reference = build_reference(one_tile(np.full(6400, 100), io_group=1), ["a.h5"], None)
    result = evaluate(build_checks(CHECKS),
                      RunChannels.from_columns(one_tile(np.full(6400, 100), io_group=2)),
                      rate_window=10, hot_rate=20, reference=reference)
    dead = [g for g in result.grades if g.check == "dead_channels" and g.io_group == 2]
    assert [g.grade for g in dead] == [NOT_ENOUGH_DATA]
    assert "reference does not match" in dead[0].reason
    assert result.channels[(2, 3)]["dead"] == 0


def test_the_reference_file_round_trips_with_its_provenance(tmp_path) -> None:
    rng = np.random.default_rng(1)
    source = one_tile(rng.poisson(50, 6400))
    reference = build_reference(source, ["/data/run-7.h5"], (1_700_000_000, 1_700_000_099))
    path = write_reference(reference, tmp_path / "ref.h5")
    loaded = load_reference(path)
    assert loaded.sources == ("/data/run-7.h5",) and loaded.span == (1_700_000_000,
                                                                       1_700_000_099)
    assert loaded.name == "run-7"
    order = np.argsort(channel_key(source.io_group, source.io_channel, source.chip_id,
                                   source.channel_id))
    assert np.array_equal(loaded.count, source.count[order])
    assert np.allclose(loaded.rate_hz, source.count[order] / 100)
    with h5py.File(path) as f:
        assert f.attrs["format"] == "larpix-monitor-reference"
        assert len(f["channels"]) == 6400


@pytest.mark.parametrize(("content", "reason"), [
    (None, "no such reference file"),
    (b"", "not an HDF5 file"),
    (b"this is text, not HDF5" * 10, "not an HDF5 file"),
    ("data-file", "not a larpix-monitor reference"),
    ("truncated", "unreadable or truncated"),
])
def test_a_bad_reference_is_one_line_naming_the_file(tmp_path, content, reason) -> None:
    path = tmp_path / "ref.h5"
    if content == "data-file":
        with h5py.File(path, "w") as f:
            f.create_dataset("packets", data=np.zeros(3))
    elif content == "truncated":
        write_reference(build_reference(one_tile(np.full(6400, 3)), [], None), path)
        path.write_bytes(path.read_bytes()[:2000])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ReferenceError) as caught:
        load_reference(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def _chip(io_group, io_channel, chip_id, masked):
    chip = Chip(Key(io_group, io_channel, chip_id), version=2)
    chip.config.channel_mask = [1 if c in masked else 0 for c in range(64)]
    return chip


def test_channel_masks_from_the_configs_larpix_control_logs(tmp_path) -> None:
    path = tmp_path / "run.h5"
    old = _chip(1, 5, 23, {1, 2})
    hdf5format.to_file(str(path), chip_list=[old, _chip(1, 6, 40, set())], version="2.4")
    hdf5format.to_file(str(path), chip_list=[_chip(1, 5, 23, {0, 17, 63})], version="2.4")
    masks = masks_from_file(path)
    assert set(masks.chips) == {(1, 5, 23), (1, 6, 40)}
    assert np.flatnonzero(masks.chips[(1, 5, 23)]).tolist() == [0, 17, 63]   # the latest
    assert not masks.chips[(1, 6, 40)].any()


def test_channel_masks_from_asic_config_files(tmp_path) -> None:
    chip = _chip(2, 9, 51, {5, 6})
    chip.config.write(str(tmp_path / "config-2-9-51-2024_05_01.json"))   # larpix-control's
    flat = {"CHIP_KEY": "2-10-77", "channel_mask": [int(c == 63) for c in range(64)]}
    (tmp_path / "config_2-10-77.json").write_text(json.dumps(flat))       # the 2x2 DAQ's
    masks = masks_from_directory(tmp_path)
    assert np.flatnonzero(masks.chips[(2, 9, 51)]).tolist() == [5, 6]
    assert np.flatnonzero(masks.chips[(2, 10, 77)]).tolist() == [63]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(tmp_path / "config_2-10-77.json", "configs/config_2-10-77.json")
    assert set(masks_from_tar(buffer.getvalue(), "x").chips) == {(2, 10, 77)}


def test_an_asic_config_without_a_mask_is_an_error() -> None:
    with pytest.raises(Exception, match="config_1-2-3.json: ASIC config without channel_mask"):
        mask_from_json(b'{"CHIP_KEY": "1-2-3"}', "config_1-2-3.json")


def test_the_default_checks_run_without_a_file_and_a_file_changes_them(tmp_path) -> None:
    defaults = build_checks(CHECKS)
    assert [c.name for c in defaults] == [cls.name for cls in CHECKS]
    path = tmp_path / "checks.yaml"
    path.write_text("dead_channels:\n  warning: 0.1\n  bad: 0.2\nstaleness:\n  enabled: false\n")
    configured = {c.name: c for c in build_checks(CHECKS, path)}
    assert "staleness" not in configured
    assert configured["dead_channels"].limits["warning"] == 0.1
    assert configured["dead_channels"].limits["min_expected"] == 10
    assert "dead_channels (needs --reference)" in describe_checks(configured.values())


@pytest.mark.parametrize(("text", "reason"), [
    ("dead_chanels: {bad: 1}\n", "unknown check(s) dead_chanels"),
    ("dead_channels: {bda: 1}\n", "dead_channels: unknown limit(s) bda"),
    ("dead_channels: {bad: high}\n", "dead_channels.bad must be a number"),
    ("dead_channels: {warning: 0.5, bad: 0.1}\n", "warning must not be above bad"),
    ("dead_channels: [1, 2\n", "not valid YAML"),
    ("- 1\n", "expected a mapping"),
])
def test_a_bad_checks_file_is_one_line(tmp_path, text, reason) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text(text)
    with pytest.raises(ChecksConfigError) as caught:
        build_checks(CHECKS, path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)


def test_short_runs_are_not_enough_data() -> None:
    reference = build_reference(one_tile(np.full(6400, 100)), ["a.h5"], None)
    result = evaluate(build_checks(CHECKS), RunChannels.from_columns(one_tile(np.full(6400, 0))),
                      rate_window=10, hot_rate=20, reference=reference)
    assert BAD not in {g.grade for g in result.grades}
    tile = [g for g in result.grades if g.check in ("dead_channels", "shifted_channels")]
    assert {g.grade for g in tile} == {NOT_ENOUGH_DATA}


def test_quality_metrics_render_like_prometheus_client() -> None:
    reference = build_reference(one_tile(np.full(6400, 100)), ["a.h5"], None, name="X")
    counts = np.full(6400, 100)
    counts[:200] = 0
    result = evaluate(build_checks(CHECKS), RunChannels.from_columns(one_tile(counts)),
                      rate_window=10, hot_rate=20, reference=reference)
    source = QualityFamilies()
    registry = build_registry(DetectorMetrics(), MonitorHealth(), [source])
    empty = registry.collector.exposition()
    assert empty == generate_latest(registry) and b"# TYPE larpix_quality gauge" in empty
    source.set(result)
    text = registry.collector.exposition()
    assert text == generate_latest(registry)
    assert registry.collector.exposition(openmetrics=True) == openmetrics_latest(registry)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text.decode())
               for s in family.samples}
    expected = {("larpix_quality", (("check", g.check), ("io_group", str(g.io_group)),
                                    ("tile", str(g.tile)))): g.grade for g in result.grades}
    assert {k: v for k, v in samples.items() if k[0] == "larpix_quality"} == expected
    key = ("larpix_channels", (("io_group", "1"), ("status", "dead"), ("tile", "3")))
    assert samples[key] == 200
    assert samples[("larpix_quality", (("check", "dead_channels"), ("io_group", "1"),
                                       ("tile", "3")))] == BAD
    assert sum(v for k, v in samples.items() if k[0] == "larpix_channels") == 6400
    assert GOOD in expected.values()


def test_masked_channels_are_disabled_never_dead(tmp_path: Path) -> None:
    reference = build_reference(one_tile(np.full(6400, 100)), ["a.h5"], None)
    counts = np.full(6400, 100)
    counts[:64] = 0                                   # chip 11 silent: all of it masked
    (tmp_path / "config_1-9-11.json").write_text(
        json.dumps({"CHIP_KEY": "1-9-11", "channel_mask": [1] * 64}))
    result = evaluate(build_checks(CHECKS), RunChannels.from_columns(one_tile(counts)),
                      rate_window=10, hot_rate=20, reference=reference,
                      masks=masks_from_directory(tmp_path))
    assert result.channels[(1, 3)]["disabled"] == 64 and result.channels[(1, 3)]["dead"] == 0
