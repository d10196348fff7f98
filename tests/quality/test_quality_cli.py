"""The quality commands as a user runs them: ``reference``, ``checks`` and ``once
--reference --report``, as subprocesses, checked against the simulator's truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from support.quality_runs import FAULT_TILES, injected, simulate, table_of

from exporter.quality import (
    CHECKS,
    RunChannels,
    build_checks,
    evaluate,
    load_reference,
    masks_from_file,
)
from exporter.simulate import Faults

CLI = [sys.executable, "-m", "exporter.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reference_file(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "refs" / "REF.h5"
    result = run("reference", str(runs["reference"]), "-o", str(out), "--name", "ref-1")
    assert result.returncode == 0, result.stderr
    assert "reference run ref-1" in result.stdout
    return out


def test_the_reference_is_the_good_runs_table(runs, reference_file) -> None:
    truth = table_of(runs["reference"])
    loaded = load_reference(reference_file)
    assert loaded.name == "ref-1" and loaded.sources == (str(runs["reference"]),)
    assert np.array_equal(loaded.count, truth.count)        # truth rows are in key order
    assert np.allclose(loaded.adc_mean, truth.adc_mean) and np.allclose(loaded.adc_rms,
                                                                         truth.adc_rms)
    with h5py.File(runs["reference"]) as f:
        stamps = f["packets"]["timestamp"][f["packets"]["packet_type"] == 4]
    assert loaded.span == (int(stamps.min()), int(stamps.max()))
    seconds = loaded.span[1] - loaded.span[0] + 1
    assert np.allclose(loaded.rate_hz, truth.count / seconds)


def _report(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def test_signoff_of_the_faulty_run_is_bad_with_reasons(runs, reference_file, tmp_path) -> None:
    result = run("once", str(runs["faulty"]), "-o", str(tmp_path / "plots"),
                 "--reference", str(reference_file), "--report", str(tmp_path / "report"),
                 "--metrics-file", str(tmp_path / "run.prom"))
    assert result.returncode == 1, result.stderr
    assert "quality: bad" in result.stdout
    report = _report(tmp_path / "report")
    assert report["verdict"] == "bad" and report["reference"] == "ref-1"
    # the same grades as the checks give on the simulator's own table of the file
    expected = evaluate(build_checks(CHECKS), RunChannels.from_columns(table_of(runs["faulty"])),
                        rate_window=10, hot_rate=20, reference=load_reference(reference_file),
                        masks=masks_from_file(runs["faulty"]))
    graded = {(g["check"], g["io_group"], g["tile"]): g["grade"] for g in report["grades"]
              if g["check"] not in ("sync_missing", "sync_drift")}
    assert graded == {(g.check, g.io_group, g.tile): g.grade for g in expected.grades
                      if g.check not in ("sync_missing", "sync_drift")}
    for check, tiles in FAULT_TILES.items():
        for group, tile in tiles:
            (grade,) = [g for g in report["problems"]
                        if (g["check"], g["io_group"], g["tile"]) == (check, group, tile)]
            assert grade["grade"] >= 1 and "vs reference run ref-1" in grade["reason"]
    dead = len(injected(runs["faulty"])[2]["dead"])
    assert any(p["reason"].startswith(f"io_group 2 tile 2: {dead:,} of ")
               for p in report["problems"] if p["check"] == "dead_channels")
    assert {c["io_group"]: c["disabled"] for c in report["channels"] if c["tile"] == 1}[1] == 30
    prom = (tmp_path / "run.prom").read_text()
    assert 'larpix_quality{check="dead_channels",io_group="1",tile="1"} 2.0' in prom
    assert 'larpix_channels{io_group="1",status="disabled",tile="1"} 30.0' in prom
    assert (tmp_path / "report" / "report.html").exists()
    assert list((tmp_path / "report" / "plots").glob("faulty_*.png"))


def test_signoff_of_a_clean_run_is_good(runs, reference_file, tmp_path) -> None:
    result = run("once", str(runs["clean"]), "-o", str(tmp_path / "plots"), "--no-plots",
                 "--reference", str(reference_file), "--report", str(tmp_path / "report"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = _report(tmp_path / "report")
    assert report["verdict"] == "good"
    assert [p for p in report["problems"] if p["grade"] > 0] == []


def test_a_missing_reference_is_one_line_and_not_a_verdict(runs, tmp_path) -> None:
    missing = tmp_path / "nowhere" / "REF.h5"
    result = run("once", str(runs["clean"]), "-o", str(tmp_path / "plots"), "--no-plots",
                 "--reference", str(missing), "--report", str(tmp_path / "report"))
    assert result.returncode == 0
    errors = [line for line in result.stderr.splitlines() if str(missing) in line]
    assert len(errors) == 1 and errors[0].endswith(f"{missing}: no such reference file")
    assert "Traceback" not in result.stderr
    dead = [g for g in _report(tmp_path / "report")["grades"] if g["check"] == "dead_channels"]
    assert dead and all(g["grade"] == -1 and "no such reference file" in g["reason"]
                        for g in dead)


def test_a_short_run_is_not_enough_data(reference_file, tmp_path) -> None:
    path = simulate(tmp_path / "short.h5", 9, Faults(cabled_tiles=2), packets=3_000)
    result = run("once", str(path), "-o", str(tmp_path / "plots"), "--no-plots",
                 "--reference", str(reference_file), "--report", str(tmp_path / "report"))
    assert result.returncode == 0, result.stdout + result.stderr
    grades = _report(tmp_path / "report")["grades"]
    assert max(g["grade"] for g in grades) <= 0
    assert {g["grade"] for g in grades if g["check"] == "dead_channels"} == {-1}


def test_checks_lists_every_check_with_its_limits(tmp_path) -> None:
    result = run("checks")
    assert result.returncode == 0
    for cls in CHECKS:
        assert f"\n{cls.name}" in "\n" + result.stdout
    path = tmp_path / "checks.yaml"
    path.write_text("noisy_channels:\n  factor: 2.5\n")
    assert "factor=2.5" in run("checks", "--checks", str(path)).stdout
    path.write_text("noisy_chanels: {}\n")
    bad = run("checks", "--checks", str(path))
    assert bad.returncode == 2 and bad.stderr.strip().startswith(f"{path}: unknown check")
    once = run("once", str(path), "-o", str(tmp_path), "--checks", str(path))
    assert once.returncode == 2 and "unknown check" in once.stderr
    assert "Traceback" not in once.stderr


def test_reference_of_an_unusable_file_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all" * 10)
    result = run("reference", str(bad), "-o", str(tmp_path / "REF.h5"))
    assert result.returncode == 2 and result.stderr.strip().startswith(f"{bad}: ")
    assert "Traceback" not in result.stderr and not (tmp_path / "REF.h5").exists()
