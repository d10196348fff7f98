"""``larpix-monitor serve`` as a real process on a free port, checked over real HTTP
against the simulator's ground truth and against counts made here with numpy."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
from larpix import Packet_v2
from larpix.format import hdf5format
from support.service import (
    MONITOR,
    RUN_MONITOR,
    MonitorProcess,
    all_mismatches,
    load_truth,
    parse_exposition,
    parse_openmetrics,
    series,
    value,
)
from support.waiting import free_port, wait_for

from exporter.packets import PACKET_TYPE_NAMES
from exporter.simulate import LiveSimulation, simulate_file
from exporter.source.checkpoint import CheckpointStore

PLOTS = ["AdcSpectrum", "PacketRate"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    return data, plots


def rows_read(samples, fmt: str) -> float:
    return value(samples, "larpix_monitor_rows_read_total", format=fmt)


def payload_bytes(packet_file: Path, raw_file: Path) -> int:
    """Bytes of rows as stored: packet rows, or raw messages plus their header rows."""
    with h5py.File(packet_file, "r", locking=False) as f:
        packets = f["packets"].shape[0] * f["packets"].dtype.itemsize
    with h5py.File(raw_file, "r", locking=False) as f:
        raw = sum(m.size for m in f["msgs"][:]) + f["msg_headers"][:].nbytes
    return packets + raw


def test_live_packet_and_raw_files_match_the_ground_truth(dirs) -> None:
    data, plots = dirs
    started = time.time()
    with MonitorProcess(data, plots, "--plots", *PLOTS) as monitor:
        packet = LiveSimulation(data / "run-packet.h5", "packet", rate=3000, io_groups=(1, 2),
                                seed=11)
        raw = LiveSimulation(data / "run-raw.h5", "raw", rate=3000, io_groups=(3, 4), seed=12)
        seen_growing = []
        for _ in range(8):
            packet.append(1)
            raw.append(1)
            seen_growing.append(rows_read(monitor.scrape(), "packet"))
            time.sleep(0.15)
        truths = [packet.close(), raw.close()]
        assert truths == [load_truth(data / "run-packet.h5"), load_truth(data / "run-raw.h5")]

        def caught_up():
            samples = monitor.scrape()
            done = (rows_read(samples, "packet") == truths[0]["rows"]
                    and rows_read(samples, "raw") == truths[1]["rows"])
            return samples if done else None

        samples = wait_for(caught_up, 10, "every row of both files")
        assert all_mismatches(samples, truths) == []
        assert 0 < seen_growing[3] < seen_growing[-1]  # counted while the file grew
        assert series(samples, "larpix_monitor_read_errors_total") == {}
        assert series(samples, "larpix_monitor_read_errors_total") == {}
        assert value(samples, "larpix_monitor_bytes_read_total") == payload_bytes(
            data / "run-packet.h5", data / "run-raw.h5")
        assert value(samples, "larpix_monitor_files", state="active") == 2
        last = value(samples, "larpix_monitor_last_ingest_timestamp_seconds")
        assert started <= last <= time.time()
        assert 0 <= value(samples, "larpix_monitor_ingest_lag_seconds") < 5

        expected_plots = {(stem, plot) for stem in ("run-packet", "run-raw") for plot in PLOTS}
        listing = wait_for(lambda: (lst := monitor.get("/api/plots").json()) and {
            (p["file"], p["plot"]) for p in lst} == expected_plots and lst, 15, "all plots")
        for entry in listing:
            response = monitor.get(entry["url"])
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert response.content.startswith(PNG_SIGNATURE)
            on_disk = plots / f"{entry['file']}_dqm" / f"{entry['file']}_{entry['plot']}.png"
            assert on_disk.read_bytes().startswith(PNG_SIGNATURE)
            assert abs(entry["updated"] - on_disk.stat().st_mtime) < 5
        page = monitor.get("/").text
        for stem, plot in expected_plots:
            assert f'id="file-{stem}"' in page
            assert f'src="/plots/{stem}/{plot}.png?v=' in page


def test_a_packet_on_disk_shows_in_metrics_within_a_second_even_when_polling(dirs) -> None:
    data, plots = dirs
    with MonitorProcess(data, plots, "--poll", "--no-plots") as monitor:
        live = LiveSimulation(data / "poll.h5", "packet", rate=2000, io_groups=(1,), seed=3)
        delays = []
        for _ in range(5):
            live.append(1)
            landed = time.monotonic()
            expected = live.truth["rows"]
            wait_for(lambda n=expected: rows_read(monitor.scrape(), "packet") >= n, 5,
                     "the new second", interval=0.02)
            delays.append(time.monotonic() - landed)
            time.sleep(0.3)
        live.close()
    assert max(delays) < 1.5, delays


def test_plot_images_have_etags_last_modified_304_and_head(dirs) -> None:
    data, plots = dirs
    simulate_file(data / "static.h5", "packet", n_packets=20_000, seed=5)
    with MonitorProcess(data, plots, "--plots", "AdcSpectrum") as monitor:
        wait_for(lambda: monitor.get("/api/plots").json(), 15, "the plot")
        url = "/plots/static/AdcSpectrum.png"
        full = monitor.get(url)
        assert full.status_code == 200
        etag, modified = full.headers["etag"], full.headers["last-modified"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
        assert full.headers["cache-control"] == "no-cache"
        assert full.content == (plots / "static_dqm" / "static_AdcSpectrum.png").read_bytes()

        for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"other", W/{etag}'},
                        {"If-None-Match": "*"}, {"If-Modified-Since": modified}):
            not_modified = monitor.get(url, headers=headers)
            assert not_modified.status_code == 304, headers
            assert not_modified.content == b"" and not_modified.headers["etag"] == etag
        changed = monitor.get(url, headers={"If-None-Match": '"something-else"',
                                            "If-Modified-Since": modified})
        assert changed.status_code == 200 and changed.content == full.content
        stale = monitor.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
        assert stale.status_code == 200

        head = httpx.head(monitor.base + url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == etag
        assert int(head.headers["content-length"]) == len(full.content)

        for path in ("/", "/metrics", "/api/plots", "/healthz", "/readyz", "/docs",
                     "/openapi.json"):
            got, headed = monitor.get(path), httpx.head(monitor.base + path)
            assert got.status_code == 200 and headed.status_code == 200, path
            assert headed.content == b"" and got.content, path
            assert headed.headers["content-type"] == got.headers["content-type"], path


def test_metrics_speak_openmetrics_when_asked(dirs) -> None:
    data, plots = dirs
    truth = simulate_file(data / "om.h5", "packet", n_packets=5_000, seed=6, io_groups=(2,))
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == truth["rows"], 10, "the file")
        plain = monitor.get("/metrics")
        assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
        om = monitor.get("/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")
        timestamps = [e["value"] for e in truth["metrics"]["larpix_packets_total"]
                      if e["labels"]["packet_type"] == "timestamp"]
        labels = {"io_group": "2", "io_channel": "0", "packet_type": "timestamp"}
        for samples in (parse_exposition(plain.text), parse_openmetrics(om.text)):
            assert value(samples, "larpix_packets_total", **labels) == timestamps[0]


def larpix_data_packets(n: int, seed: int) -> list[Packet_v2]:
    rng = np.random.default_rng(seed)
    packets = []
    for _ in range(n):
        p = Packet_v2()
        p.io_group, p.io_channel = 7, int(rng.integers(1, 9))
        p.chip_id, p.channel_id = int(rng.integers(11, 20)), int(rng.integers(0, 64))
        p.packet_type = 0
        p.dataword = int(rng.integers(0, 256))
        p.assign_parity()
        packets.append(p)
    return packets


def packet_counts(packets: list[Packet_v2]) -> Counter:
    """larpix_packets_total as computed from larpix-control's own packet objects."""
    return Counter((str(p.io_group), str(p.io_channel), PACKET_TYPE_NAMES[p.packet_type])
                   for p in packets)


def group_seven(samples) -> Counter:
    """larpix_packets_total of io_group 7 (the hand-made file) as scraped."""
    counts = Counter()
    for labels, v in series(samples, "larpix_packets_total").items():
        d = dict(labels)
        if d["io_group"] == "7":
            counts[(d["io_group"], d["io_channel"], d["packet_type"])] = v
    return counts


def test_truncated_replaced_and_deleted_files(dirs) -> None:
    data, plots = dirs
    path = data / "rotating.h5"
    first = larpix_data_packets(300, seed=1)
    hdf5format.to_file(str(path), first)
    other = data / "other.h5"
    simulate_file(other, "packet", n_packets=3_000, seed=9, io_groups=(9,))
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == 3_300, 10, "both files")
        assert group_seven(monitor.scrape()) == packet_counts(first)

        # Truncated in place (same inode), rewritten with fewer rows: read from row 0.
        inode = path.stat().st_ino
        shorter = larpix_data_packets(120, seed=2)
        hdf5format.to_file(str(path), shorter, mode="w")
        assert path.stat().st_ino == inode
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == 3_420, 10, "the rewrite")
        samples = monitor.scrape()
        assert value(samples, "larpix_monitor_file_resets_total") == 1
        assert group_seven(samples) == packet_counts(first) + packet_counts(shorter)

        # Replaced by another file (new inode): read from row 0 again.
        replacement = larpix_data_packets(200, seed=3)
        hdf5format.to_file(str(data / "incoming.tmp"), replacement)
        os.replace(data / "incoming.tmp", path)
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == 3_620, 10, "the replacement")
        samples = monitor.scrape()
        assert value(samples, "larpix_monitor_file_resets_total") == 2
        assert group_seven(samples) == (packet_counts(first) + packet_counts(shorter)
                                        + packet_counts(replacement))

        # Deleted: dropped from the files gauge and from the saved state; counts stay.
        path.unlink()
        wait_for(lambda: sum(v for v in series(monitor.scrape(),
                                                "larpix_monitor_files").values()) == 1,
                 10, "the deletion")
        checkpoint = CheckpointStore.in_plot_dir(plots)
        wait_for(lambda: str(path) not in checkpoint.load().cursors, 5,
                 "a checkpoint without the file")
        assert rows_read(monitor.scrape(), "packet") == 3_620
        # said once: by the watcher ("deleted"), or by a read that got there first ("vanished")
        gone = re.findall(r"rotating\.h5: (\w+) \(200 rows had been read\); no longer watched",
                          monitor.log_text())
        assert gone in (["deleted"], ["vanished"])


def test_a_bad_file_is_counted_once_and_the_good_ones_keep_flowing(dirs) -> None:
    data, plots = dirs
    (data / "corrupt.h5").write_bytes(b"this is not an HDF5 file\n" * 40)
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        live = LiveSimulation(data / "good.h5", "raw", rate=1500, io_groups=(5,), seed=4)
        for _ in range(6):
            live.append(1)
            time.sleep(0.3)  # several polls while the bad file sits there
        truth = live.close()
        samples = wait_for(lambda: (s := monitor.scrape()) and rows_read(s, "raw")
                           == truth["rows"] and s, 10, "the good file")
        assert all_mismatches(samples, [truth]) == []
        assert series(samples, "larpix_monitor_read_errors_total") == {
            frozenset({("reason", "not_hdf5")}): 1.0}
        assert value(samples, "larpix_monitor_files", state="error") == 1
        error_lines = [line for line in monitor.log_text().splitlines()
                       if "corrupt.h5" in line and " INFO " not in line]
        assert len(error_lines) == 1 and " WARNING " in error_lines[0]
        assert "not an HDF5 file" in error_lines[0]
        assert "not an HDF5 file" in monitor.get("/").text  # the shifter sees why

        # Once the file is replaced by a good one, it is read like any other.
        fixed = simulate_file(data / "fixed.tmp", "packet", n_packets=2_000, seed=8,
                              io_groups=(6,))
        os.replace(data / "fixed.tmp", data / "corrupt.h5")
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == fixed["rows"], 10, "the fix")
        samples = monitor.scrape()
        assert value(samples, "larpix_monitor_files", state="error") == 0
        assert value(samples, "larpix_monitor_read_errors_total", reason="not_hdf5") == 1


def test_start_up_policy_reads_the_run_in_progress_and_waits_for_old_files(dirs) -> None:
    data, plots = dirs
    recent = simulate_file(data / "recent.h5", "packet", n_packets=1_000, seed=1, io_groups=(1,))
    old = data / "old.h5"
    old_live = LiveSimulation(old, "packet", rate=1000, io_groups=(2,), seed=2)
    old_live.append(2)
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    with MonitorProcess(data, plots, "--no-plots", "--flush_interval", "600") as monitor:
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == recent["rows"], 10, "recent")
        time.sleep(1.0)
        samples = monitor.scrape()
        assert rows_read(samples, "packet") == recent["rows"]  # the old file waits
        assert value(samples, "larpix_monitor_files", state="waiting") == 1
        old_live.append(2)  # it changes: read from its start
        old_truth = old_live.close()
        samples = wait_for(lambda: (s := monitor.scrape()) and rows_read(s, "packet") == (
            recent["rows"] + old_truth["rows"]) and s, 10, "the old file")
        assert all_mismatches(samples, [recent, old_truth]) == []
        assert "old.h5: untouched for more than 600 s; waiting until it changes" in (
            monitor.log_text())


def test_read_all_reads_old_files_at_once(dirs) -> None:
    data, plots = dirs
    truth = simulate_file(data / "archive.h5", "raw", n_packets=3_000, seed=4, io_groups=(8,))
    long_ago = time.time() - 7 * 86400
    os.utime(data / "archive.h5", (long_ago, long_ago))
    with MonitorProcess(data, plots, "--no-plots", "--read-all") as monitor:
        samples = wait_for(lambda: (s := monitor.scrape()) and rows_read(s, "raw")
                           == truth["rows"] and s, 10, "the archive")
        assert all_mismatches(samples, [truth]) == []


def test_requests_stay_fast_while_a_large_file_is_ingested(dirs, tmp_path: Path) -> None:
    data, plots = dirs
    simulate_file(data / "warmup.h5", "packet", n_packets=20_000, seed=1)
    big = simulate_file(tmp_path / "big.h5", "packet", n_packets=2_000_000, seed=2)
    with MonitorProcess(data, plots, "--plots", "AdcSpectrum") as monitor:
        wait_for(lambda: monitor.get("/api/plots").json(), 15, "the first plot")
        took: list[float] = []
        answers: list[tuple[str, int]] = []
        done = threading.Event()

        def probe() -> None:  # only records: the test thread asserts
            with httpx.Client(base_url=monitor.base, timeout=10) as client:
                while not done.wait(0.01):
                    for path in ("/healthz", "/plots/warmup/AdcSpectrum.png", "/metrics"):
                        started = time.monotonic()
                        answers.append((path, client.get(path).status_code))
                        took.append(time.monotonic() - started)

        prober = threading.Thread(target=probe)
        prober.start()
        os.replace(tmp_path / "big.h5", data / "big.h5")  # 2 M rows land at once
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == 20_000 + big["rows"], 30,
                 "the large file")
        done.set()
        prober.join()
        wait_for(lambda: any(p["file"] == "big" for p in monitor.get("/api/plots").json()), 30,
                 "its plot being drawn")
    assert answers and {status for _, status in answers} == {200}
    assert len(took) >= 30
    assert np.median(took) < 0.1 and max(took) < 1.0, sorted(took)[-5:]


def test_bad_settings_stop_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    (tmp_path / "plots").mkdir()
    cases = [
        (["-i", str(missing), "-o", str(tmp_path / "plots")], f"{missing}: data directory"),
        (["-i", str(tmp_path), "-o", str(tmp_path / "plots"), "--plots", "NoSuchPlot"],
         "unknown plot(s): NoSuchPlot"),
        (["-i", str(tmp_path), "-o", str(tmp_path)], "must not be the data directory"),
    ]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cases.append((["-i", str(tmp_path), "-o", str(tmp_path / "plots"), "--port",
                       str(busy.getsockname()[1])], "cannot listen on 127.0.0.1:"))
        for args, message in cases:
            if "--port" not in args:
                args = [*args, "--port", str(free_port())]
            done = subprocess.run([MONITOR, "serve", *args], capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 2, (args, done.stderr)
            lines = [ln for ln in done.stderr.splitlines() if "ERROR" in ln]
            assert len(lines) == 1 and message in lines[0], done.stderr
            assert "Traceback" not in done.stderr


def test_demo_serves_live_runs_of_both_formats_and_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen([MONITOR, "demo", "--port", str(port), "--rate", "2000",
                                 "--run-seconds", "3", "--interval", "1"],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            def scrape():
                try:
                    return parse_exposition(httpx.get(base + "/metrics", timeout=5).text)
                except httpx.TransportError:
                    return None

            def both_formats_and_a_second_run():
                samples = scrape()
                runs = sum(v for v in series(samples or {}, "larpix_monitor_files").values())
                return (samples and rows_read(samples, "packet") > 0
                        and rows_read(samples, "raw") > 0 and runs >= 4)

            wait_for(both_formats_and_a_second_run, 60, "two runs of both formats")
            wait_for(lambda: httpx.get(base + "/api/plots", timeout=5).json(), 90, "a plot")
            # The demo describes its module: the anode and network maps draw too.
            wait_for(lambda: {"AnodeMap", "NetworkMap"} <= {
                p["plot"] for p in httpx.get(base + "/api/plots", timeout=5).json()}, 90,
                "the anode and network maps")
        finally:
            demo.send_signal(signal.SIGINT)
            code = demo.wait(120)
    output = log.read_text()
    assert code == 0, output[-3000:]
    printed = next(line for line in output.splitlines() if "simulated runs in" in line)
    data_dir = Path(printed.split("simulated runs in ", 1)[1].split(",", 1)[0])
    assert f"Open http://127.0.0.1:{port}/" in output
    assert data_dir.name == "data" and not data_dir.parent.exists()  # temporary: removed
    assert "Traceback" not in output and "AnodeMap off" not in output


def test_the_seed_entry_point_serves_the_same(dirs) -> None:
    data, plots = dirs
    truth = simulate_file(data / "seed.h5", "packet", n_packets=4_000, seed=7, io_groups=(3,))
    with MonitorProcess(data, plots, "--plots", "AdcSpectrum",
                        command=(RUN_MONITOR,)) as monitor:
        samples = wait_for(lambda: (s := monitor.scrape()) and rows_read(s, "packet")
                           == truth["rows"] and s, 10, "the file")
        assert all_mismatches(samples, [truth]) == []
        wait_for(lambda: (plots / "seed_dqm" / "seed_AdcSpectrum.png").exists(), 20,
                 "the seed's plot path")
        assert monitor.get("/plots/seed/AdcSpectrum.png").status_code == 200
