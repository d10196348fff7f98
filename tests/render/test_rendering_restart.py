"""A restarted ``larpix-monitor serve`` shows the plots it saved before, with no new data."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from email.utils import formatdate
from pathlib import Path

from support.service import MonitorProcess
from support.waiting import wait_for

from exporter.simulate import simulate_file

PLOTS = ["AdcSpectrum", "PacketRate"]


def served(monitor: MonitorProcess) -> dict[str, tuple[bytes, str, str]]:
    """url -> (body, ETag, Last-Modified) of every plot /api/plots lists."""
    out = {}
    for entry in monitor.get("/api/plots").json():
        response = monitor.get(entry["url"])
        assert response.status_code == 200, entry
        out[entry["url"]] = (response.content, response.headers["etag"],
                             response.headers["last-modified"])
    return out


def test_a_restarted_monitor_serves_the_saved_plots_without_new_data(tmp_path: Path) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    simulate_file(data / "run_a.h5", "packet", n_packets=5_000, seed=11, io_groups=(1,))
    simulate_file(data / "run_b.h5", "raw", n_packets=3_000, seed=12, io_groups=(2,))
    expected = {(f, p) for f in ("run_a", "run_b") for p in PLOTS}

    with MonitorProcess(data, plots, "--plots", *PLOTS) as first:
        wait_for(lambda: {(e["file"], e["plot"]) for e in first.get("/api/plots").json()}
                 == expected, 20, "every plot of both runs")
        before = served(first)
    assert first.proc is not None and first.proc.returncode == 0

    on_disk = {f"/plots/{f}/{p}.png": plots / f"{f}_dqm" / f"{f}_{p}.png" for f, p in expected}
    assert set(before) == set(on_disk)
    for url, path in on_disk.items():
        assert before[url][0] == path.read_bytes()
    # A stray file and a plot not asked for stay unserved.
    shutil.copy(on_disk["/plots/run_a/AdcSpectrum.png"], plots / "run_a_dqm" / "run_a_Other.png")

    def check_restart(monitor: MonitorProcess) -> None:
        listing = monitor.get("/api/plots").json()
        assert {(e["file"], e["plot"]) for e in listing} == expected
        assert all(e["url"] == f"/plots/{e['file']}/{e['plot']}.png" for e in listing)
        for entry in listing:
            assert entry["updated"] == on_disk[entry["url"]].stat().st_mtime
        after = served(monitor)
        assert set(after) == set(before)
        for url, (body, etag, modified) in after.items():
            assert body == before[url][0] == on_disk[url].read_bytes()
            assert etag == before[url][1]
            assert etag == '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
            assert modified == formatdate(on_disk[url].stat().st_mtime, usegmt=True)
            assert monitor.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert monitor.get("/plots/run_a/Other.png").status_code == 404
        page = monitor.get("/").text
        assert all(f"/plots/{f}/{p}.png" in page for f, p in expected)

    # Finished runs: a run written within --flush_interval would be replayed and redrawn.
    an_hour_ago = time.time() - 3600
    for name in ("run_a.h5", "run_b.h5"):
        os.utime(data / name, (an_hour_ago, an_hour_ago))
    with MonitorProcess(data, plots, "--plots", *PLOTS) as second:
        check_restart(second)
        time.sleep(2.5)  # a few render intervals: no new data, so nothing is re-rendered
        check_restart(second)

    # The runs are finished and moved away: their plots still show.
    for name in ("run_a.h5", "run_b.h5"):
        os.unlink(data / name)
    with MonitorProcess(data, plots, "--plots", *PLOTS) as third:
        check_restart(third)
