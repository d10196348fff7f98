"""Metrics never wait for plots: a plugin that does not return holds up no count.

The plugin below blocks every call until the test lets it go. While it is stuck
in its first call, the service must count every row of a file many times its
plot buffer; the rows the plots could not take are dropped from the plot input
and counted, so that once the plugin is released, the rows it was given plus
the rows skipped are exactly the rows on disk.
"""

from __future__ import annotations

from pathlib import Path

from support.service import MonitorProcess, value
from support.waiting import wait_for

from exporter.simulate import simulate_file

BLOCKED_PLOT = r'''
import os
import time

import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))


class BlockedPlot:
    """Writes the rows it has been given so far, then waits for the file 'release'."""

    def __init__(self):
        self.rows = 0
        self.calls = 0

    def __call__(self, filename, fh, fig=None):
        self.rows += len(fh['packets'])
        self.calls += 1
        with open(os.path.join(HERE, 'call-%d' % self.calls), 'w') as out:
            out.write(str(self.rows))
        deadline = time.monotonic() + 300
        while not os.path.exists(os.path.join(HERE, 'release')) and time.monotonic() < deadline:
            time.sleep(0.01)
        return fig if fig is not None else plt.figure(figsize=(2, 2))
'''


def plugin_calls(plugins: Path) -> dict[int, int]:
    """Rows the plugin had been given at each call (call number -> cumulative rows)."""
    calls = {}
    for path in plugins.glob("call-*"):
        text = path.read_text()
        if text:
            calls[int(path.name.removeprefix("call-"))] = int(text)
    return calls


def test_a_plugin_that_never_returns_delays_no_count(tmp_path: Path) -> None:
    data, plots, plugins = tmp_path / "data", tmp_path / "plots", tmp_path / "plugins"
    for directory in (data, plugins):
        directory.mkdir()
    (plugins / "blocked_plot.py").write_text(BLOCKED_PLOT)
    truth = simulate_file(data / "run.h5", "packet", n_packets=5_000_000, seed=23,
                          io_groups=(1, 2))
    monitor = MonitorProcess(data, plots, "--plugin-dir", str(plugins), "--plots",
                             "BlockedPlot", "--interval", "1")
    with monitor:
        wait_for(lambda: plugin_calls(plugins), 60, "the plugin's first call")
        # every row is counted while the plugin is stuck in that call
        counted = wait_for(lambda: (lambda s: s if value(
            s, "larpix_monitor_rows_read_total", format="packet") == truth["rows"] else None)(
            monitor.scrape()), 120, "every row counted")
        assert list(plugin_calls(plugins)) == [1]
        skipped_while_blocked = value(counted, "larpix_monitor_plot_rows_skipped_total")
        assert skipped_while_blocked > 0

        (plugins / "release").touch()
        wait_for(lambda: max(plugin_calls(plugins).values()) + value(
            monitor.scrape(), "larpix_monitor_plot_rows_skipped_total") == truth["rows"],
            120, "the plots to take what was not skipped")
        skipped = value(monitor.scrape(), "larpix_monitor_plot_rows_skipped_total")
    assert skipped == skipped_while_blocked  # nothing more was skipped once released
    assert max(plugin_calls(plugins).values()) == truth["rows"] - skipped
