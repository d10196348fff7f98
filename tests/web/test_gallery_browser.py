"""The gallery as a shifter sees it: Debian's headless Chromium opens the page of a running
monitor; every plot image must load, and the screenshot must show them."""

from __future__ import annotations

from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import numpy as np
from matplotlib import image as mpimg
from support.browser import chromium
from support.service import MonitorProcess
from support.waiting import wait_for

from exporter.simulate import simulate_file

PLOTS = ["AdcSpectrum", "PacketRate"]


class PlotImages(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img" and attributes.get("class") == "plot":
            self.images.append(attributes)
        if tag == "section":
            self.sections.append(attributes.get("id") or "")


def rgb(pixels: np.ndarray) -> np.ndarray:
    """Pixels as 0-255 integers, without alpha."""
    return np.round(pixels[..., :3] * 255).astype(np.int64)


def dominant_ink(png: bytes) -> np.ndarray:
    """The commonest colour of a plot that is neither white-ish nor grey (its data)."""
    pixels = rgb(mpimg.imread(BytesIO(png), format="png")).reshape(-1, 3)
    coloured = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]
    colours, counts = np.unique(coloured, axis=0, return_counts=True)
    return colours[np.argmax(counts)]


def test_gallery_shows_every_plot_in_headless_chromium(tmp_path: Path) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    simulate_file(data / "run-packet.h5", "packet", n_packets=20_000, seed=1)
    simulate_file(data / "run-raw.h5", "raw", n_packets=20_000, seed=2)
    with MonitorProcess(data, plots, "--plots", *PLOTS) as monitor:
        listing = wait_for(lambda: (lst := monitor.get("/api/plots").json()) and len(lst) == 4
                           and lst, 30, "four plots")
        dom = chromium(tmp_path / "profile-dom", "--dump-dom", monitor.base + "/").stdout
        shot = tmp_path / "gallery.png"
        chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,1400",
                 monitor.base + "/")
        served = monitor.get(listing[0]["url"]).content

    page = PlotImages()
    page.feed(dom.decode())
    assert page.sections == ["file-run-packet", "file-run-raw"]
    shown = {(img["data-file"], img["data-plot"]): img for img in page.images}
    assert set(shown) == {(e["file"], e["plot"]) for e in listing}
    assert all(img.get("data-loaded") == "1" for img in page.images), page.images

    screenshot = rgb(mpimg.imread(shot))
    assert screenshot.shape[:2] == (1400, 1400)
    assert len(np.unique(screenshot.reshape(-1, 3), axis=0)) > 200  # not a blank page
    header = screenshot[5:30, 5:1000].reshape(-1, 3)
    assert (np.abs(header - [0x1D, 0x23, 0x30]).max(axis=1) < 8).mean() > 0.5
    ink = dominant_ink(served)
    near = np.abs(screenshot.reshape(-1, 3) - ink).max(axis=1) < 24
    assert near.sum() > 500, f"no pixels of the plot colour {ink} on screen"
