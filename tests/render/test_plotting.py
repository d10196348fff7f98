"""Plot plugin discovery and the render thread, with seed-style plugins."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support.paths import SEED_PLUGINS

from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry
from exporter.packets import PACKET_DTYPE
from exporter.render import (
    PacketFile,
    PlotRenderer,
    discover_plots,
    list_plots_command,
    output_path,
)

BIN = Path(sys.executable).parent
SEED_PLOTS = {"TemplatePlot", "CumulativeDataPackets", "PairCount_1", "PairCount_2"}


def exposed(health: MonitorHealth) -> dict[tuple[str, str], float]:
    """(sample name, plot label) -> value, from the Prometheus exposition of ``health``."""
    text = generate_latest(build_registry(DetectorMetrics(), health)).decode()
    return {(sample.name, sample.labels.get("plot", "")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if "plot" in sample.labels and "le" not in sample.labels}


def packets(n: int, io_group: int = 1, packet_type: int = 0, start: int = 0) -> np.ndarray:
    rows = np.zeros(n, PACKET_DTYPE)
    rows["io_group"] = io_group
    rows["io_channel"] = 1
    rows["packet_type"] = packet_type
    rows["timestamp"] = np.arange(start, start + n)
    return rows


def write_module(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


RECORDER = """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    CALLS = []

    class Recorder(object):
        def __call__(self, filename, fh, fig=None):
            CALLS.append((filename, len(fh['packets']), fig, sorted(fh.keys())))
            if fig is None:
                fig = Figure(figsize=(2, 2))
                fig.add_subplot(111)
            fig.axes[0].set_title(str(len(CALLS)))
            return fig
"""


def recorder_module(catalog):
    import sys
    return sys.modules[catalog.plots["Recorder"].__module__]


@pytest.fixture
def seed_catalog():
    return discover_plots([SEED_PLUGINS])


def test_discovery_finds_seed_classes_factory_classes_and_skips_helpers(seed_catalog):
    assert SEED_PLOTS <= set(seed_catalog.plots)
    assert "ChannelHelper" not in seed_catalog.plots
    assert seed_catalog.plots["PairCount_2"].io_group == 2
    assert not seed_catalog.failures


def test_broken_modules_are_reported_in_one_line_and_the_rest_loads(tmp_path):
    write_module(tmp_path, "bad_syntax", "class Broken(:\n    pass\n")
    write_module(tmp_path, "bad_import", """
        import yaml
        with open('/nonexistent/layout-2.4.0.yaml') as f:
            GEO = yaml.safe_load(f)

        class NeedsGeometry(object):
            def __call__(self, filename, fh, fig=None):
                return fig
    """)
    write_module(tmp_path, "fine", RECORDER)
    catalog = discover_plots([tmp_path, SEED_PLUGINS])
    assert set(catalog.failures) == {str(tmp_path / "bad_syntax.py"),
                                     str(tmp_path / "bad_import.py")}
    assert catalog.failures[str(tmp_path / "bad_syntax.py")].startswith("SyntaxError")
    assert "FileNotFoundError" in catalog.failures[str(tmp_path / "bad_import.py")]
    assert "layout-2.4.0.yaml" in catalog.failures[str(tmp_path / "bad_import.py")]
    assert all("\n" not in reason for reason in catalog.failures.values())
    assert "NeedsGeometry" not in catalog.plots
    assert {"Recorder"} | SEED_PLOTS <= set(catalog.plots)


def test_missing_plugin_dir_is_a_failure_not_a_crash(tmp_path):
    catalog = discover_plots([tmp_path / "nope"])
    assert catalog.failures == {str(tmp_path / "nope"): "plugin directory does not exist"}


def test_plots_command_lists_loaded_and_failed(tmp_path, capsys):
    write_module(tmp_path, "bad_syntax", "def (:\n")
    status = list_plots_command([SEED_PLUGINS, tmp_path])
    out = capsys.readouterr().out
    assert status == 1
    for name in SEED_PLOTS:
        assert any(line.split()[0] == name and "line_update.py" in line or
                   line.split()[0] == name and "template_plot.py" in line
                   for line in out.splitlines())
    assert f"FAILED {tmp_path / 'bad_syntax.py'}: SyntaxError" in out
    assert list_plots_command([SEED_PLUGINS]) == 0


def test_packet_file_behaves_like_the_seed_h5py_file():
    rows = packets(6)
    rows["packet_type"][::2] = 4
    fh = PacketFile("run.h5", rows)
    assert list(fh.keys()) == ["packets"] and "packets" in fh and fh.filename == "run.h5"
    data = fh["packets"][fh["packets"]["packet_type"] == 0]
    assert list(data["timestamp"]) == [1, 3, 5]
    assert list(fh["packets"][1:3]["timestamp"]) == [1, 2]
    assert fh["packets"][["io_group", "packet_type"]].dtype.names == ("io_group", "packet_type")
    assert len(fh["packets"]) == 6


def test_seed_plugins_write_the_seed_paths(tmp_path, seed_catalog):
    renderer = PlotRenderer(seed_catalog, tmp_path, selected=sorted(SEED_PLOTS))
    source = Path("/data/run_2024_01_01.h5")
    renderer.add_packets(source, packets(10, io_group=1))
    renderer.add_packets(source, packets(5, io_group=2))
    made = renderer.render(source).result()
    renderer.shutdown()
    assert {image.plot for image in made} == SEED_PLOTS
    for image in made:
        path = tmp_path / "run_2024_01_01_dqm" / f"run_2024_01_01_{image.plot}.png"
        assert image.path == path == output_path(tmp_path, source, image.plot, ".png")
        assert path.read_bytes() == image.png
        with Image.open(path) as decoded:
            assert decoded.format == "PNG"
            pixels = np.asarray(decoded.convert("L"), dtype=float)
        assert pixels.var() > 0
    sizes = {image.plot: Image.open(image.path).size for image in made}
    assert sizes["PairCount_1"] == (300, 200)
    assert sizes["CumulativeDataPackets"] == (400, 300)
    assert sizes["TemplatePlot"] == tuple(int(v) for v in plt.rcParams["figure.figsize"]
                                          * np.array(plt.rcParams["figure.dpi"]))


def test_line_update_plugin_extends_its_line_with_new_packets():
    plugin_cls = discover_plots([SEED_PLUGINS]).plots["CumulativeDataPackets"]
    plugin = plugin_cls()
    fig = None
    sizes = [7, 0, 12, 3]
    for n in sizes:
        rows = np.concatenate([packets(n), packets(4, packet_type=4)])
        fig = plugin("run.h5", PacketFile("run.h5", rows), fig)
    x, y = fig.axes[0].get_lines()[0].get_data()
    assert list(x) == [1, 2, 3, 4]
    assert list(y) == list(np.cumsum(sizes))
    plt.close(fig)


def test_each_call_gets_only_new_packets_and_its_previous_figure(tmp_path):
    write_module(tmp_path / "plugins", "recorder", RECORDER)
    catalog = discover_plots([tmp_path / "plugins"])
    calls = recorder_module(catalog).CALLS
    calls.clear()
    renderer = PlotRenderer(catalog, tmp_path / "out", selected=["Recorder"])
    a, b = Path("/d/a.h5"), Path("/d/b.h5")
    renderer.add_packets(a, packets(3))
    renderer.add_packets(a, packets(4))
    renderer.add_packets(b, packets(2))
    renderer.render(a).result()
    renderer.render(b).result()
    renderer.render(a).result()  # nothing new: the plugin is not called
    renderer.add_packets(a, packets(5))
    renderer.render(a).result()
    renderer.shutdown()
    assert [(c[0], c[1]) for c in calls] == [("/d/a.h5", 7), ("/d/b.h5", 2), ("/d/a.h5", 5)]
    assert calls[0][2] is None and calls[1][2] is None
    assert calls[2][2] is not None and calls[2][2] is not calls[1][2]
    assert all(c[3] == ["packets"] for c in calls)


def test_full_buffer_renders_early_instead_of_dropping(tmp_path):
    write_module(tmp_path / "plugins", "recorder", RECORDER)
    catalog = discover_plots([tmp_path / "plugins"])
    calls = recorder_module(catalog).CALLS
    calls.clear()
    renderer = PlotRenderer(catalog, tmp_path / "out", selected=["Recorder"],
                            max_buffered_rows=50)
    source = Path("/d/big.h5")
    for _ in range(7):
        renderer.add_packets(source, packets(20))
    renderer.render(source).result()
    renderer.shutdown()
    seen = [c[1] for c in calls]
    assert sum(seen) == 140
    # At least one render before the explicit one; never more than about two caps at once.
    assert len(seen) >= 2 and max(seen) <= 2 * 50 + 20


def test_failing_plugin_keeps_last_image_and_others_go_on(tmp_path, caplog):
    write_module(tmp_path / "plugins", "flaky", """
        from matplotlib.figure import Figure

        class Flaky(object):
            calls = 0

            def __call__(self, filename, fh, fig=None):
                Flaky.calls += 1
                if Flaky.calls > 1:
                    raise ZeroDivisionError('bad bin')
                fig = Figure(figsize=(2, 2))
                fig.add_subplot(111).plot([0, 1], [0, 1])
                return fig

        class NotAFigure(object):
            def __call__(self, filename, fh, fig=None):
                return 'a picture'
    """)
    write_module(tmp_path / "plugins", "recorder", RECORDER)
    catalog = discover_plots([tmp_path / "plugins"])
    health = MonitorHealth()
    renderer = PlotRenderer(catalog, tmp_path / "out", health=health,
                            selected=["Flaky", "NotAFigure", "Recorder"])
    source = Path("/d/run.h5")
    caplog.set_level(logging.ERROR)
    renderer.add_packets(source, packets(3))
    first = {i.plot: i for i in renderer.render(source).result()}
    for _ in range(3):
        renderer.add_packets(source, packets(3))
        renderer.render(source).result()
    renderer.shutdown()
    assert set(first) == {"Flaky", "Recorder"}
    kept = renderer.image("run", "Flaky")
    assert kept == first["Flaky"]
    assert kept.path.read_bytes() == first["Flaky"].png
    assert renderer.image("run", "Recorder").png != first["Recorder"].png
    assert renderer.image("run", "NotAFigure") is None
    metrics = exposed(health)
    assert metrics[("larpix_monitor_plot_errors_total", "Flaky")] == 3
    assert metrics[("larpix_monitor_plot_errors_total", "NotAFigure")] == 4
    assert metrics[("larpix_monitor_plot_render_seconds_count", "Recorder")] == 4
    assert metrics[("larpix_monitor_plot_render_seconds_count", "Flaky")] == 1
    assert ("larpix_monitor_plot_errors_total", "Recorder") not in metrics
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 2
    assert any("ZeroDivisionError: bad bin" in r.getMessage() for r in tracebacks)
    assert any("not a matplotlib Figure" in r.getMessage() for r in tracebacks)


@pytest.mark.parametrize("ext,magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                       (".svg", b"<?xml"), (".jpg", b"\xff\xd8\xff")])
def test_extensions_on_disk_and_png_in_memory(tmp_path, ext, magic):
    write_module(tmp_path / "plugins", "recorder", RECORDER)
    catalog = discover_plots([tmp_path / "plugins"])
    renderer = PlotRenderer(catalog, tmp_path / "out", ext=ext, selected=["Recorder"])
    source = Path("/d/run_7.h5")
    renderer.add_packets(source, packets(4))
    (image,) = renderer.render(source).result()
    renderer.shutdown()
    assert image.path == tmp_path / "out" / "run_7_dqm" / f"run_7_Recorder{ext}"
    assert image.path.read_bytes().startswith(magic)
    assert image.png.startswith(b"\x89PNG")
    assert image.etag == '"' + hashlib.blake2b(image.png, digest_size=16).hexdigest() + '"'
    assert sorted(p.name for p in image.path.parent.iterdir()) == [image.path.name]
    umask = os.umask(0o022)
    os.umask(umask)
    assert image.path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert renderer.images() == [image]


def test_close_idle_closes_pyplot_figures_and_starts_over(tmp_path, seed_catalog):
    renderer = PlotRenderer(seed_catalog, tmp_path, selected=["TemplatePlot",
                                                              "CumulativeDataPackets"])
    source = Path("/d/run.h5")
    before = set(plt.get_fignums())
    renderer.add_packets(source, packets(4))
    renderer.render(source).result()
    assert len(set(plt.get_fignums()) - before) == 2
    renderer.close_idle(3600)
    assert len(set(plt.get_fignums()) - before) == 2
    renderer.close_idle(0)
    assert set(plt.get_fignums()) - before == set()
    renderer.add_packets(source, packets(4))
    assert len(renderer.render(source).result()) == 2
    renderer.shutdown()
    assert set(plt.get_fignums()) - before == set()


def test_plot_calls_run_on_one_thread(tmp_path):
    write_module(tmp_path / "plugins", "threads", """
        import threading
        from matplotlib.figure import Figure

        THREADS = set()

        class ThreadA(object):
            def __call__(self, filename, fh, fig=None):
                THREADS.add(threading.get_ident())
                return fig or Figure(figsize=(1, 1))

        class ThreadB(ThreadA):
            pass
    """)
    catalog = discover_plots([tmp_path / "plugins"])
    renderer = PlotRenderer(catalog, tmp_path / "out", selected=["ThreadA", "ThreadB"])
    sources = [Path(f"/d/f{i}.h5") for i in range(4)]

    def feed(source: Path) -> None:
        for _ in range(5):
            renderer.add_packets(source, packets(2))
            renderer.render(source)

    feeders = [threading.Thread(target=feed, args=(s,)) for s in sources]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    renderer.shutdown()
    import sys
    threads = sys.modules[catalog.plots["ThreadA"].__module__].THREADS
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert {i.file for i in renderer.images()} == {"f0", "f1", "f2", "f3"}


def test_unknown_selected_plots_are_named(tmp_path, seed_catalog, caplog):
    renderer = PlotRenderer(seed_catalog, tmp_path, selected=["TemplatePlot", "NoSuchPlot"])
    renderer.shutdown()
    assert renderer.unknown == ["NoSuchPlot"]
    assert list(renderer.plots) == ["TemplatePlot"]
    assert "NoSuchPlot" in caplog.text


def test_wrong_dtype_is_refused(tmp_path, seed_catalog):
    renderer = PlotRenderer(seed_catalog, tmp_path)
    with pytest.raises(ValueError, match="PACKET_DTYPE"):
        renderer.add_packets(Path("/d/x.h5"), np.zeros(3, [("io_group", "u1")]))
    renderer.shutdown()


def test_plots_marked_not_default_run_only_when_named(tmp_path):
    catalog = discover_plots([])
    by_default = PlotRenderer(catalog, tmp_path)
    named = PlotRenderer(catalog, tmp_path, selected=["PixelMap_1_3", "HotPixels"])
    by_default.shutdown()
    named.shutdown()
    per_tile = {f"PixelMap_{g}_{t}" for g in (1, 2) for t in range(1, 9)}
    assert per_tile <= set(catalog.plots)
    assert not per_tile & set(by_default.plots)
    assert {"PixelMaps", "ChannelHealth", "PacketRate"} <= set(by_default.plots)
    assert list(named.plots) == ["PixelMap_1_3", "HotPixels"]


# -- the command line and the service, as a user runs them -----------------------------

FAILING_PLUGINS = {
    "broken_syntax": "class Broken(:\n    pass\n",
    "raises": """
        from matplotlib.figure import Figure

        class Raises(object):
            def __call__(self, filename, fh, fig=None):
                raise RuntimeError('this plugin always fails')
    """,
}


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    from exporter.simulate import simulate_file

    path = tmp_path_factory.mktemp("cli") / "run_cli.h5"
    simulate_file(path, "packet", n_packets=20_000, seed=2)
    return path


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False)


@pytest.mark.parametrize("entry", ["once", "run_monitor"])
def test_seed_plugins_in_once_mode_write_the_seed_paths(entry, sim_file, tmp_path):
    broken = tmp_path / "broken"
    for name, source in FAILING_PLUGINS.items():
        write_module(broken, name, source)
    plots = ["TemplatePlot", "CumulativeDataPackets", "PairCount_2", "Raises", "PacketRate"]
    out = tmp_path / "out"
    if entry == "once":
        done = run(BIN / "larpix-monitor", "once", sim_file, "-o", out, "--plugin-dir",
                   SEED_PLUGINS, "--plugin-dir", broken, "--plots", *plots, cwd=tmp_path)
    else:
        done = run(BIN / "run_monitor.py", "--once", sim_file, "-o", out, "--plugin-dir",
                   SEED_PLUGINS, "--plugin-dir", broken, "--plots", *plots, cwd=tmp_path)
    written = sorted(p.name for p in (out / "run_cli_dqm").iterdir())
    assert written == sorted(f"run_cli_{p}.png" for p in plots if p != "Raises"), done.stderr
    for name in written:
        with Image.open(out / "run_cli_dqm" / name) as image:
            assert np.asarray(image.convert("L"), dtype=float).var() > 0
    failure = [line for line in done.stderr.splitlines() if "broken_syntax.py" in line]
    assert len(failure) == 1 and "SyntaxError" in failure[0]
    assert done.stderr.count("RuntimeError: this plugin always fails") == 1


def test_seed_plugins_in_serve_mode_are_served_and_written(sim_file, tmp_path):
    from support.service import MonitorProcess
    from support.waiting import wait_for

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sim_file, data / sim_file.name)
    out = tmp_path / "plots"
    plots = ["TemplatePlot", "CumulativeDataPackets", "PacketRate"]
    with MonitorProcess(data, out, "--plugin-dir", str(SEED_PLUGINS), "--plots", *plots) as mon:
        files = [out / "run_cli_dqm" / f"run_cli_{p}.png" for p in plots]
        wait_for(lambda: all(f.exists() for f in files), 60, "plot files")
        for plot, path in zip(plots, files, strict=True):
            response = mon.get(f"/plots/run_cli/{plot}.png")
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert response.content == path.read_bytes()


SAVED_PLOTS = """
    from matplotlib.figure import Figure

    class Recorder(object):
        def __call__(self, filename, fh, fig=None):
            fig = fig or Figure(figsize=(2, 2))
            fig.clear()
            fig.add_subplot(111).plot(fh['packets']['timestamp'])
            return fig

    Recorder_2 = Recorder

    class Other(Recorder):
        pass
"""


def write_png(path: Path, shade: int) -> bytes:
    """A small PNG made by Pillow, distinct per ``shade``; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (3, 2), shade).save(path, format="PNG")
    return path.read_bytes()


def blake_etag(png: bytes) -> str:
    return '"' + hashlib.blake2b(png, digest_size=16).hexdigest() + '"'


@pytest.fixture
def saved_catalog(tmp_path):
    write_module(tmp_path / "plugins", "saved", SAVED_PLOTS)
    return discover_plots([tmp_path / "plugins"])


def test_a_new_renderer_serves_the_images_the_last_one_saved(tmp_path, saved_catalog):
    out = tmp_path / "out"
    first = PlotRenderer(saved_catalog, out, selected=["Recorder", "Recorder_2"])
    made = []
    for name, n in (("a", 5), ("b", 9)):
        first.add_packets(Path(f"/d/{name}.h5"), packets(n))
        made += first.render(Path(f"/d/{name}.h5")).result()
    first.shutdown()
    assert len(made) == 4

    second = PlotRenderer(saved_catalog, out, selected=["Recorder", "Recorder_2"])
    loaded = second.images()
    assert [(i.file, i.plot, i.png, i.path) for i in loaded] == sorted(
        (i.file, i.plot, i.png, i.path) for i in made)
    for image in loaded:
        assert image.png == image.path.read_bytes()
        assert image.etag == blake_etag(image.png)
        assert image.updated == image.path.stat().st_mtime
        assert second.image(image.file, image.plot) == image
    # New data for a loaded run replaces its image as before.
    second.add_packets(Path("/d/a.h5"), packets(2))
    renewed = {i.plot: i for i in second.render(Path("/d/a.h5")).result()}
    second.shutdown()
    assert second.image("a", "Recorder") == renewed["Recorder"]
    assert renewed["Recorder"].png != second.image("b", "Recorder").png
    assert renewed["Recorder"].png == (out / "a_dqm" / "a_Recorder.png").read_bytes()


def test_only_the_layout_the_renderer_writes_is_loaded(tmp_path, saved_catalog, caplog):
    out = tmp_path / "out"
    wanted = {("run_1", "Recorder"): write_png(out / "run_1_dqm" / "run_1_Recorder.png", 10),
              ("run_1", "Recorder_2"): write_png(out / "run_1_dqm" / "run_1_Recorder_2.png",
                                                 20),
              ("a_dqm", "Recorder"): write_png(out / "a_dqm_dqm" / "a_dqm_Recorder.png", 30)}
    write_png(out / "run_1_dqm" / "run_1_Other.png", 40)  # a plot not selected
    write_png(out / "run_1_dqm" / "other_Recorder.png", 50)  # another run's name
    write_png(out / "run_1_dqm" / ".run_1_Recorder.png.x1.tmp", 60)
    write_png(out / "run_2" / "run_2_Recorder.png", 70)  # not a run directory
    write_png(tmp_path / "elsewhere" / "run_3_Recorder.png", 80)
    (out / "run_3_dqm").mkdir()
    (out / "run_3_dqm" / "run_3_Recorder.png").symlink_to(
        tmp_path / "elsewhere" / "run_3_Recorder.png")
    write_png(tmp_path / "linked" / "linked_Recorder.png", 90)
    (out / "linked_dqm").symlink_to(tmp_path / "linked")
    (out / "run_4_dqm").mkdir()
    (out / "run_4_dqm" / "run_4_Recorder.png").write_bytes(b"<html>not a picture</html>")
    (out / "run_5_dqm" / "run_5_Recorder.png").mkdir(parents=True)
    (out / "state.json").write_text("{}")

    caplog.set_level(logging.WARNING)
    renderer = PlotRenderer(saved_catalog, out, selected=["Recorder", "Recorder_2"])
    renderer.shutdown()
    assert {(i.file, i.plot): i.png for i in renderer.images()} == wanted
    assert [r.getMessage() for r in caplog.records] == [
        f"{out / 'run_4_dqm' / 'run_4_Recorder.png'}: saved plot not loaded: not a PNG file"]


def test_saved_images_are_capped_to_the_runs_modified_last(tmp_path, saved_catalog):
    out = tmp_path / "out"
    mtimes = {("a", "Recorder"): 1_000_000.0, ("a", "Recorder_2"): 1_000_400.5,
              ("b", "Recorder"): 1_000_300.0, ("c", "Recorder"): 1_000_200.0}
    pngs = {}
    for shade, ((run, plot), mtime) in enumerate(mtimes.items()):
        path = out / f"{run}_dqm" / f"{run}_{plot}.png"
        pngs[(run, plot)] = write_png(path, shade * 20)
        os.utime(path, (mtime, mtime))
    renderer = PlotRenderer(saved_catalog, out, selected=["Recorder", "Recorder_2"],
                            max_image_files=2)
    renderer.shutdown()
    # "a" was modified last (by its newest plot), then "b"; "c" is left on disk only.
    assert {(i.file, i.plot): (i.png, i.updated) for i in renderer.images()} == {
        key: (pngs[key], mtimes[key]) for key in [("a", "Recorder"), ("a", "Recorder_2"),
                                                  ("b", "Recorder")]}
    assert renderer.image("c", "Recorder") is None


def test_nothing_is_loaded_for_other_extensions_or_when_not_asked(tmp_path, saved_catalog):
    out = tmp_path / "out"
    write_png(out / "run_dqm" / "run_Recorder.png", 10)
    for options in ({"ext": ".pdf"}, {"load_saved": False}):
        renderer = PlotRenderer(saved_catalog, out, selected=["Recorder"], **options)
        renderer.shutdown()
        assert renderer.images() == [], options
    loading = PlotRenderer(saved_catalog, out, selected=["Recorder"])
    loading.shutdown()
    assert [i.file for i in loading.images()] == ["run"]
    missing = PlotRenderer(saved_catalog, tmp_path / "not_yet", selected=["Recorder"])
    missing.shutdown()
    assert missing.images() == []
