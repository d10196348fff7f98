"""The run's sign-off page: ``once ... --report DIR`` writes report.json and report.html.

report.json holds every check's grade and reason per tile, the channels per
status and where the run and the reference came from; report.html shows the
same as a coloured grid with the reasons under it, then the run's plots
(copied beside it, so the directory can be mailed or archived whole).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path

from exporter import __version__
from exporter.quality.checks import Check
from exporter.quality.evaluate import STATUSES, QualityResult
from exporter.quality.grades import BAD, GOOD, GRADE_NAMES, NOT_ENOUGH_DATA, WARNING

COLOURS = {NOT_ENOUGH_DATA: "#9aa0a6", GOOD: "#2e7d32", WARNING: "#f9a825", BAD: "#c62828"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1d2330; }
h1 { margin: 0 0 .2em; } .meta { color: #5b6475; }
.verdict { display: inline-block; padding: .3em .8em; border-radius: 4px; color: #fff;
           font-weight: bold; font-size: 1.2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #dde1e8; padding: .25em .6em; text-align: center; }
td.grade { color: #fff; font-weight: bold; min-width: 5em; }
li.reason { margin: .2em 0; } .plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 480px; } figure img { width: 100%; border: 1px solid #dde1e8; }
"""


def report_document(result: QualityResult, checks: Sequence[Check], files: Sequence[str],
                    spans: dict[str, tuple[int, int] | None]) -> dict:
    """What report.json holds."""
    return {
        "monitor_version": __version__,
        "created": time.time(),
        "files": [{"path": f, "span": spans.get(f)} for f in files],
        "verdict": GRADE_NAMES[result.worst()],
        **result.as_dict(),
        "checks": [{"name": c.name, "description": c.description, "limits": c.limits,
                    "needs_reference": c.needs_reference} for c in checks],
    }


def write_report(directory: str | Path, result: QualityResult, checks: Sequence[Check],
                 files: Sequence[str], spans: dict[str, tuple[int, int] | None],
                 plots: Sequence[Path] = ()) -> tuple[Path, Path]:
    """Write report.json, report.html and copies of ``plots``; return the two pages."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    copied = []
    if plots:
        (directory / "plots").mkdir(exist_ok=True)
        for plot in plots:
            shutil.copyfile(plot, directory / "plots" / plot.name)
            copied.append(f"plots/{plot.name}")
    document = report_document(result, checks, files, spans)
    json_path = _atomic(directory / "report.json", json.dumps(document, indent=1))
    html_path = _atomic(directory / "report.html", render_html(document, copied))
    return json_path, html_path


def _atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _cell(grade: dict | None) -> str:
    if grade is None:
        return "<td></td>"
    title = escape(grade["reason"] or grade["grade_name"])
    return (f'<td class="grade" data-grade="{grade["grade"]}" title="{title}" '
            f'style="background:{COLOURS[grade["grade"]]}">{escape(grade["grade_name"])}</td>')


def render_html(document: dict, plots: Sequence[str]) -> str:
    grades = document["grades"]
    places = sorted({(g["io_group"], g["tile"]) for g in grades})
    by_place = {(g["check"], g["io_group"], g["tile"]): g for g in grades}
    head = "".join(f"<th>io_group {g}<br>{'whole' if t == 0 else f'tile {t}'}</th>"
                   for g, t in places)
    rows = "".join(
        f'<tr data-check="{escape(check)}"><th>{escape(check)}</th>'
        + "".join(_cell(by_place.get((check, g, t))) for g, t in places) + "</tr>"
        for check in document["checks_run"])
    reasons = "".join(
        f'<li class="reason" data-grade="{g["grade"]}">'
        f'<b style="color:{COLOURS[g["grade"]]}">{escape(g["grade_name"])}</b> '
        f'{escape(g["check"])}: {escape(g["reason"])}</li>'
        for g in sorted(document["problems"], key=lambda g: (-g["grade"], g["check"])))
    channels = "".join(
        f"<tr><td>{c['io_group']}</td><td>{c['tile']}</td>"
        + "".join(f"<td>{c[s]:,}</td>" for s in STATUSES) + "</tr>"
        for c in document["channels"])
    files = "".join(f"<li>{escape(f['path'])}</li>" for f in document["files"])
    figures = "".join(f'<figure><img src="{escape(p)}" alt="{escape(Path(p).stem)}">'
                      f"<figcaption>{escape(Path(p).stem)}</figcaption></figure>"
                      for p in plots)
    verdict = document["worst"]
    reference = (escape(document["reference"]) if document["reference"]
                 else f"none ({escape(document['reference_problem'] or '')})")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Run sign-off</title><style>{_STYLE}</style></head><body>"
        f'<h1>Run sign-off</h1><p class="meta">larpix-monitor {escape(document["monitor_version"])}'
        f' · reference run: {reference}</p><ul class="files">{files}</ul>'
        f'<p>Verdict: <span class="verdict" id="verdict" data-grade="{verdict}" '
        f'style="background:{COLOURS[verdict]}">{escape(document["verdict"])}</span></p>'
        f'<h2>Grades</h2><table id="grades"><tr><th>check</th>{head}</tr>{rows}</table>'
        f'<h2>Reasons</h2><ul id="reasons">{reasons or "<li>every check is good</li>"}</ul>'
        '<h2>Channels per status</h2><table id="channels"><tr><th>io_group</th><th>tile</th>'
        + "".join(f"<th>{s}</th>" for s in STATUSES) + f"</tr>{channels}</table>"
        f'<h2>Plots</h2><div class="plots">{figures or "<p>no plots</p>"}</div>'
        "</body></html>\n")
