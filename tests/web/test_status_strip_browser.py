"""The gallery's status strip in Debian's headless Chromium, against the simulator's truth."""

from __future__ import annotations

from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from support.browser import chromium
from support.service import MonitorProcess
from support.waiting import wait_for

from exporter.simulate import simulate_file


class Strip(HTMLParser):
    """Cells of the strip: io_group -> name -> data-value; and the page's links."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[int, dict[str, float]] = defaultdict(dict)
        self.links: list[str] = []
        self._group: int | None = None
        self.before_sections = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-io-group"):
            self._group = int(a["data-io-group"])
        if tag == "td" and self._group is not None and a.get("data-name"):
            self.cells[self._group][a["data-name"]] = float(a["data-value"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "table" and a.get("id") == "status-strip" and self.before_sections is None:
            self.before_sections = True
        if tag == "section" and self.before_sections is None:
            self.before_sections = False


def expected(truth: dict) -> dict[int, dict[str, float]]:
    want: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in truth["metrics"]["larpix_packet_rate_hz"]:
        if s["labels"]["packet_type"] == "data":
            want[int(s["labels"]["io_group"])]["rate"] = s["value"]
    chips = truth["chips"]
    words, errors = defaultdict(int), defaultdict(int)
    for g, n, e in zip(chips["io_group"], chips["words"], chips["parity_errors"], strict=True):
        words[g] += n
        errors[g] += e
    for g in words:
        want[g]["parity"] = 100 * errors[g] / words[g]
    c = truth["channels"]
    by_chip = defaultdict(list)
    for i, g in enumerate(c["io_group"]):
        want[g]["fifo_full"] += c["fifo_full"][i]
        want[g]["hot"] += c["hot"][i]
        by_chip[g, c["io_channel"][i], c["chip_id"][i]].append(c["count"][i])
    for (g, _, _), counts in by_chip.items():
        median = float(np.median(counts))
        if median >= 50:
            want[g]["quiet"] += sum(n < 0.1 * median for n in counts)
    return {g: dict(v) for g, v in want.items()}


def test_status_strip_shows_the_truth_before_the_plots(tmp_path: Path) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    truth = simulate_file(data / "run.h5", "raw", seconds=14, seed=6, rate=6000.0,
                          io_groups=(1, 2, 4))
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        # every packet counted (every channel may be seen before the file's last seconds)
        wait_for(lambda: sum(v for (name, _), v in monitor.scrape().items()
                             if name == "larpix_packets_total") == truth["packets"], 60,
                 "the whole file")
        assert (monitor.get("/api/channels?limit=0").json()["matched"]
                == len(truth["channels"]["count"]))
        dom = chromium(tmp_path / "profile", "--dump-dom", monitor.base + "/").stdout
    page = Strip()
    page.feed(dom.decode())
    assert page.before_sections is True
    want = expected(truth)
    assert set(page.cells) == set(want) == {1, 2, 4}
    for g, cells in want.items():
        for name, value in cells.items():
            assert page.cells[g][name] == pytest.approx(value, rel=1e-9), (g, name)
        assert page.cells[g]["hot"] == 3 and page.cells[g]["stale"] > 0
    assert any(link.startswith("/api/channels?file=run") for link in page.links)
    assert "/api/disable-list?file=run" in page.links
