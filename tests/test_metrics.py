"""The metric model against the simulator's ground truth and hand-computed traps.

Values are read back from the real Prometheus exposition text, never from
internal arrays.
"""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry
from exporter.reader import FileReader
from exporter.simulate import simulate_file

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(detector: DetectorMetrics, health: MonitorHealth | None = None) -> Samples:
    text = generate_latest(build_registry(detector, health or MonitorHealth())).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def truth_mismatches(samples: Samples, truth: dict) -> list[str]:
    """Every truth series must be exposed with its value; any other series of those names is 0."""
    wrong = []
    expected = {}
    for name, series in truth["metrics"].items():
        for s in series:
            expected[name, tuple(sorted(s["labels"].items()))] = s["value"]
    for key, value in expected.items():
        if samples.get(key) != pytest.approx(value, rel=1e-12):
            wrong.append(f"{key}: exposed {samples.get(key)}, truth {value}")
    for key, value in samples.items():
        if key[0] in truth["metrics"] and key not in expected and value != 0:
            wrong.append(f"{key}: exposed {value}, truth absent")
    return wrong


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_whole_file_equals_truth(tmp_path, fmt):
    path = tmp_path / f"run.{fmt}.h5"
    truth = simulate_file(path, fmt, n_packets=60_000, rate=3000.0, seed=3)
    detector = DetectorMetrics(truth["rate_window"], truth["hot_rate"])
    for chunk in FileReader(path, chunk_rows=16_384).read_new():
        detector.update(chunk, str(path))
    assert truth_mismatches(scrape(detector), truth) == []
