"""The quality results as a shifter and a run coordinator see them: /api/quality and the
gallery's strip of a running monitor, and the sign-off report.html in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
from matplotlib import image as mpimg
from support import browser
from support.quality_runs import FAULT_TILES, injected
from support.service import MonitorProcess, load_truth
from support.waiting import wait_for

RED = np.array([0xC6, 0x28, 0x28])


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """The report is a file:// page that loads its plots from beside it."""
    return browser.chromium(profile, *args, budget_ms=5000, file_access=True)


class Grades(HTMLParser):
    """Cells of the grade table and the reasons, as the browser's DOM has them."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str, str]] = []   # (check, grade, text)
        self.reasons: list[str] = []
        self._check = ""
        self._cell: str | None = None
        self._reason: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-check" in a:
            self._check = a["data-check"]
        if tag == "td" and "data-grade" in a:
            self._cell = a["data-grade"]
        if tag == "li" and a.get("class") == "reason":
            self._reason = []

    def handle_data(self, data) -> None:
        if self._cell is not None:
            self.cells.append((self._check, self._cell, data))
            self._cell = None
        if self._reason is not None:
            self._reason.append(data)

    def handle_endtag(self, tag) -> None:
        if tag == "li" and self._reason is not None:
            self.reasons.append("".join(self._reason))
            self._reason = None


@pytest.fixture(scope="module")
def reference_file(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "REF.h5"
    subprocess.run([sys.executable, "-m", "exporter.cli", "reference", str(runs["reference"]),
                    "-o", str(out), "--name", "ref-1"], check=True, capture_output=True)
    return out


def test_report_html_shows_grades_and_reasons(runs, reference_file, tmp_path) -> None:
    report = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "once", str(runs["faulty"]), "-o",
         str(tmp_path / "plots"), "--plots", "AdcSpectrum", "--reference", str(reference_file),
         "--report", str(report)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    url = (report / "report.html").as_uri()
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url).stdout.decode()
    page = Grades()
    page.feed(dom)
    bad_checks = {check for check, grade, text in page.cells if grade == "2"}
    assert set(FAULT_TILES) - {"hot_vs_reference"} <= bad_checks
    assert all(text == {"-1": "not enough data", "0": "good", "1": "warning", "2": "bad"}[g]
               for _, g, text in page.cells)
    dead = len(injected(runs["faulty"])[2]["dead"])
    assert any(f"io_group 2 tile 2: {dead:,} of" in r and "dead vs reference run ref-1" in r
               for r in page.reasons), page.reasons
    assert 'id="verdict"' in dom and ">bad<" in dom
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,1000", url)
    pixels = np.round(mpimg.imread(shot)[..., :3] * 255).astype(int).reshape(-1, 3)
    assert (np.abs(pixels - RED).max(axis=1) <= 2).sum() > 500   # the bad cells, in red
    assert '<img src="plots/faulty_AdcSpectrum.png"' in dom


def test_api_quality_and_the_gallery_strip_of_a_running_monitor(runs, reference_file,
                                                                tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(runs["faulty"], data / "faulty.h5")
    packets = load_truth(runs["faulty"])["packets"]
    with MonitorProcess(data, tmp_path / "plots", "--read-all", "--no-plots", "--interval", "1",
                        "--reference", str(reference_file)) as monitor:
        wait_for(lambda: sum(v for (name, _), v in monitor.scrape().items()
                             if name == "larpix_packets_total") == packets, 120,
                 "the whole file read")
        read = time.time()
        document = wait_for(lambda: (d := monitor.get("/api/quality").json()).get("evaluated")
                            and d["updated"] > read and d, 60, "an evaluation of the whole file")
        head = httpx.head(monitor.base + "/api/quality", timeout=10)
        gallery = monitor.get("/").text
        metrics = monitor.get("/metrics").text
    assert head.status_code == 200
    assert document["reference"] == "ref-1" and document["files"] == ["faulty"]
    problems = {(p["check"], p["io_group"], p["tile"]): p for p in document["problems"]}
    for check, tiles in FAULT_TILES.items():
        for group, tile in tiles:
            problem = problems[(check, group, tile)]
            assert problem["grade"] >= 1 and problem["reason"].startswith(
                f"io_group {group} tile {tile}: ")
    for grade in document["grades"]:
        line = (f'larpix_quality{{check="{grade["check"]}",io_group="{grade["io_group"]}",'
                f'tile="{grade["tile"]}"}} {float(grade["grade"])}')
        assert line in metrics
    assert 'id="quality"' in gallery
    assert 'data-io-group="2" data-tile="1" data-grade="2"' in gallery
    assert "shifted pedestal vs reference run ref-1" in gallery
