"""The HTML page a shifter leaves open: one section per file, its latest plots.

The page is built on the server (no template engine) with every value escaped.
A small script keeps it live without reloading: it polls ``/api/plots`` and
swaps an image only when that plot was re-rendered, reloads the page when
plots appear or disappear, and marks each image ``data-loaded`` once it has
decoded (which the browser test reads).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from exporter.web.quality import QUALITY_STYLE
from exporter.web.status_strip import STRIP_STYLE

if TYPE_CHECKING:
    from exporter.render import PlotImage
    from exporter.source import FileStatus

REFRESH_SECONDS = 5.0
FULL_RELOAD_SECONDS = 300.0

_SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  var refreshMs = 1000 * parseFloat(body.dataset.refresh);
  var reloadMs = 1000 * parseFloat(body.dataset.reload);
  function watch(img) {
    function mark() { img.dataset.loaded = img.naturalWidth > 0 ? "1" : "0"; }
    img.addEventListener("load", mark);
    img.addEventListener("error", function () { img.dataset.loaded = "0"; });
    if (img.complete && img.naturalWidth > 0) { mark(); }
  }
  function ages() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-time]").forEach(function (el) {
      var t = parseFloat(el.dataset.time);
      var age = Math.max(0, Math.round(now - t));
      var ago = age < 120 ? age + " s ago" : Math.round(age / 60) + " min ago";
      el.textContent = new Date(t * 1000).toLocaleTimeString() + " (" + ago + ")";
    });
  }
  function shownImages() {
    var shown = new Map();
    document.querySelectorAll("img.plot").forEach(function (img) {
      shown.set(img.dataset.file + "/" + img.dataset.plot, img);
    });
    return shown;
  }
  function refresh() {
    fetch("/api/plots", {cache: "no-store"}).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (plots) {
      if (!plots) { return; }
      var shown = shownImages();
      var same = plots.length === shown.size && plots.every(function (p) {
        return shown.has(p.file + "/" + p.plot);
      });
      if (!same) { location.reload(); return; }
      plots.forEach(function (p) {
        var img = shown.get(p.file + "/" + p.plot);
        if (parseFloat(img.dataset.updated) !== p.updated) {
          img.dataset.updated = String(p.updated);
          img.src = p.url + "?v=" + p.updated;
          var stamp = img.closest("figure").querySelector("[data-time]");
          if (stamp) { stamp.dataset.time = String(p.updated); }
        }
      });
      ages();
    }).catch(function () {});
  }
  document.querySelectorAll("img.plot").forEach(watch);
  ages();
  setInterval(refresh, refreshMs);
  setTimeout(function () { location.reload(); }, reloadMs);
})();
"""

SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()

#: Only this page's own script, styles and same-origin images may run or load.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{SCRIPT_HASH}'; base-uri 'none'; form-action 'none'; "
    f"frame-ancestors 'none'"
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: .6em 1.2em; display: flex;
         align-items: baseline; gap: 2em; flex-wrap: wrap; }
header h1 { font-size: 1.3em; margin: 0; }
header a { color: #9cc7ff; margin-right: 1em; }
main { padding: 1em 1.2em; }
section.file { background: #fff; border-radius: 6px; padding: .6em 1em 1em;
               margin-bottom: 1.2em; box-shadow: 0 1px 3px rgba(0,0,0,.15); }
section.file h2 { font-size: 1.1em; margin: .2em 0; word-break: break-all; }
.meta { color: #5b6475; font-size: .9em; margin: 0 0 .6em; }
.state-error { color: #b3261e; font-weight: bold; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure.plot { margin: 0; max-width: 480px; }
figure.plot img { width: 100%; height: auto; border: 1px solid #dde1e8; background: #fff; }
figcaption { font-size: .85em; color: #5b6475; }
figcaption b { color: #1d2330; }
.empty { color: #5b6475; font-style: italic; }
"""


def plot_url(file: str, plot: str) -> str:
    return f"/plots/{quote(file, safe='')}/{quote(plot, safe='')}.png"


def plot_listing(images: Sequence[PlotImage]) -> list[dict[str, Any]]:
    """The ``/api/plots`` document: one entry per image, ordered by file then plot."""
    return [
        {"file": im.file, "plot": im.plot, "url": plot_url(im.file, im.plot),
         "updated": im.updated}
        for im in sorted(images, key=lambda im: (im.file, im.plot))
    ]


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _figure(image: PlotImage) -> str:
    url = plot_url(image.file, image.plot)
    return (
        f'<figure class="plot">'
        f'<a href="{escape(url)}"><img class="plot" src="{escape(url)}?v={image.updated!r}" '
        f'alt="{escape(image.plot)} of {escape(image.file)}" data-file="{escape(image.file)}" '
        f'data-plot="{escape(image.plot)}" data-updated="{image.updated!r}"></a>'
        f'<figcaption><b>{escape(image.plot)}</b> updated '
        f'<span data-time="{image.updated!r}">{_utc(image.updated)}</span></figcaption>'
        f'</figure>'
    )


def _file_meta(status: FileStatus | None) -> str:
    if status is None:
        return '<p class="meta">no longer watched</p>'
    parts = [escape(status.path), escape(status.format or "format not yet known"),
             f"{status.rows:,} rows read"]
    state = escape(status.state)
    parts.append(f'<span class="state-error">{state}: {escape(status.error)}</span>'
                 if status.error else state)
    if status.last_read is not None:
        parts.append(f'last read <span data-time="{status.last_read!r}">'
                     f'{_utc(status.last_read)}</span>')
    return f'<p class="meta">{" · ".join(parts)}</p>'


def render_gallery(files: Sequence[FileStatus], images: Sequence[PlotImage],
                   refresh_seconds: float = REFRESH_SECONDS, strip: str = "",
                   quality: str = "") -> str:
    """The whole page; files without plots get a section too, so a shifter sees them.
    ``quality`` is the quality strip's HTML (exporter.web.quality), after ``strip``."""
    by_file: dict[str, list[PlotImage]] = {}
    for image in images:
        by_file.setdefault(image.file, []).append(image)
    status_by_file = {status.file: status for status in files}
    sections = []
    for name in sorted(by_file.keys() | status_by_file.keys()):
        plots = sorted(by_file.get(name, []), key=lambda im: im.plot)
        body = ('<div class="plots">' + "".join(_figure(im) for im in plots) + "</div>"
                if plots else '<p class="empty">no plots yet</p>')
        sections.append(
            f'<section class="file" id="file-{escape(name)}"><h2>{escape(name)}</h2>'
            f"{_file_meta(status_by_file.get(name))}{body}</section>")
    if not sections:
        sections.append('<p class="empty">No data files yet.</p>')
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>larpix-monitor</title><style>{_STYLE}{STRIP_STYLE}{QUALITY_STYLE}</style>"
        "</head>"
        f'<body data-refresh="{refresh_seconds!r}" data-reload="{FULL_RELOAD_SECONDS!r}">'
        '<header><h1>larpix-monitor</h1><nav><a href="/metrics">metrics</a>'
        '<a href="/api/plots">plots (JSON)</a><a href="/api/channels">channels (top 100)</a>'
        '<a href="/docs">API docs</a></nav>'
        f'<span>{len(files)} files watched, {len(images)} plots</span></header>'
        f'<main>{strip}{quality}{"".join(sections)}</main><script>{_SCRIPT}</script>'
        '</body></html>\n'
    )
