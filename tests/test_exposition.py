"""The fast exposition must be byte for byte what prometheus_client itself writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.samples import Exemplar

from exporter.exposition import Exposition
from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry
from exporter.reader import FileReader
from exporter.simulate import simulate_file

ACCEPT_HEADERS = [
    None,
    "",
    "*/*",
    "text/plain",
    "text/plain; version=0.0.4",
    "text/plain;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    # What Prometheus 3 sends by default:
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    # ... and Prometheus 2:
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
]


def reference(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class Fixed:
    def __init__(self, *families) -> None:
        self.families = families

    def collect(self):
        return list(self.families)


def registry_of(*families) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(*families))
    return registry


@pytest.fixture(scope="module")
def monitor_registry(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("exposition") / "run.h5"
    simulate_file(Path(path), "raw", n_packets=30_000, seed=3, io_groups=(1, 4))
    detector, health = DetectorMetrics(), MonitorHealth()
    chunks = list(FileReader(str(path), chunk_rows=1000).read_new())
    for chunk in chunks[:len(chunks) // 2]:
        detector.update(chunk, str(path))
    health.count_rows("raw", 10, 1000)
    health.count_read_error("not_hdf5")
    health.count_reset()
    health.set_files({"active": 1, "idle": 0, "waiting": 2, "error": 1})
    health.mark_ingest(0.25, 1_700_000_000.5)
    health.observe_render("AdcSpectrum", 0.3)
    health.count_plot_error("PacketRate")
    return build_registry(detector, health), detector, chunks[len(chunks) // 2:], str(path)


@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
def test_monitor_metrics_are_encoded_exactly_as_the_reference(monitor_registry, accept) -> None:
    registry, _, _, _ = monitor_registry
    encoder = Exposition()
    assert encoder.encode(registry, accept) == reference(registry, accept)
    assert encoder.encode(registry, accept) == reference(registry, accept)  # remembered labels


def test_remembered_labels_follow_new_values_and_new_series(monitor_registry) -> None:
    registry, detector, rest, source = monitor_registry
    encoder = Exposition()
    accept = "application/openmetrics-text; version=1.0.0"
    first = encoder.encode(registry, accept)
    for chunk in rest:
        detector.update(chunk, source)
    second = encoder.encode(registry, accept)
    assert second != first
    assert second == reference(registry, accept)
    assert encoder.encode(registry, None) == reference(registry, None)


def test_awkward_label_values_and_help_texts() -> None:
    odd = 'quote " back \\ slash\nnewline, unicode µs ✓ and {braces}'
    counter = CounterMetricFamily("x_events", f"help with {odd}", labels=["kind", "b"])
    counter.add_metric([odd, ""], 3)
    counter.add_metric(["plain", "1"], 1e20)
    gauge = GaugeMetricFamily("x_level", "no labels", value=float("nan"))
    hist = HistogramMetricFamily("x_size", "sizes", labels=["a"])
    hist.add_metric(["z"], [("0.5", 1), ("1e+06", 2), ("+Inf", 3)], 123.25)
    registry = registry_of(counter, gauge, hist)
    for accept in ACCEPT_HEADERS:
        assert Exposition().encode(registry, accept) == reference(registry, accept), accept


@pytest.mark.parametrize("family", [
    CounterMetricFamily("with_created", "c", value=1, created=1_700_000_000.0),
    GaugeMetricFamily("with_unit_seconds", "u", value=2, unit="seconds"),
    GaugeMetricFamily("name:with:colons", "colons", value=3),
], ids=["created", "unit", "colons"])
def test_special_cases_go_to_the_reference_encoder(family) -> None:
    registry = registry_of(family)
    for accept in ACCEPT_HEADERS:
        assert Exposition().encode(registry, accept) == reference(registry, accept), accept


def test_exemplars_go_to_the_reference_encoder() -> None:
    counter = CounterMetricFamily("with_exemplar", "e", labels=["a"])
    counter.add_metric(["b"], 4)
    counter.samples[0] = counter.samples[0]._replace(exemplar=Exemplar({"trace": "t1"}, 1.0))
    registry = registry_of(counter)
    accept = "application/openmetrics-text; version=1.0.0"
    assert Exposition().encode(registry, accept) == reference(registry, accept)
    assert b'# {trace="t1"} 1.0' in Exposition().encode(registry, accept)[0]


FAST = [None, "", "*/*", "text/plain", "text/plain; version=0.0.4",
        "application/openmetrics-text", "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text;version=1.0.0;escaping=underscores", ACCEPT_HEADERS[-1]]


@pytest.mark.parametrize("accept", FAST)
def test_the_monitor_s_own_metrics_never_need_the_reference_encoder(
        monitor_registry, accept, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, _, _, _ = monitor_registry
    expected = reference(registry, accept)

    def without_reference(header: str):
        def refuse(_registry):
            raise AssertionError("fell back to prometheus_client's encoder")
        return refuse, choose_encoder(header)[1]

    monkeypatch.setattr("exporter.exposition.choose_encoder", without_reference)
    assert Exposition().encode(registry, accept) == expected
