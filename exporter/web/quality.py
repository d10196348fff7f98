"""``GET /api/quality`` and the gallery's quality strip: the checks' latest verdicts.

The web side only reads a ``QualitySource``: the latest result as a plain
document (``QualityResult.as_dict()`` plus when it was made), or None before
the first evaluation.
"""

from __future__ import annotations

from html import escape
from typing import Any, Protocol

from fastapi import APIRouter
from fastapi.responses import JSONResponse

COLOURS = {-1: "#9aa0a6", 0: "#2e7d32", 1: "#f9a825", 2: "#c62828"}
NAMES = {-1: "not enough data", 0: "good", 1: "warning", 2: "bad"}
#: Reasons listed under the strip; the rest are in /api/quality.
STRIP_REASONS = 12


class QualitySource(Protocol):
    def document(self) -> dict[str, Any] | None: ...


def quality_router(source: QualitySource) -> APIRouter:
    router = APIRouter()

    async def api_quality() -> JSONResponse:
        document = source.document()
        if document is None:
            document = {"evaluated": False, "grades": [], "problems": [], "channels": []}
        return JSONResponse(document, headers={"Cache-Control": "no-cache"})

    summary = "Every check's grade per tile (-1 not enough data, 0 good, 1 warning, 2 bad), " \
              "with the reason of every grade that is not good"
    router.add_api_route("/api/quality", api_quality, methods=["GET"], summary=summary)
    router.add_api_route("/api/quality", api_quality, methods=["HEAD"], include_in_schema=False)
    return router


def quality_strip(document: dict[str, Any] | None) -> str:
    """One coloured box per tile (its worst grade, reasons on hover), then the reasons."""
    if not document or not document.get("grades"):
        return ('<div class="quality" id="quality"><p class="empty">Quality: not '
                'evaluated yet</p></div>')
    worst: dict[tuple[int, int], int] = {}
    reasons: dict[tuple[int, int], list[str]] = {}
    for grade in document["grades"]:
        place = (grade["io_group"], grade["tile"])
        worst[place] = max(worst.get(place, -1), grade["grade"])
        if grade["grade"] > 0:
            reasons.setdefault(place, []).append(f'{grade["check"]}: {grade["reason"]}')
    boxes = "".join(
        f'<span class="tile-grade" data-io-group="{g}" data-tile="{t}" data-grade="{worst[g, t]}"'
        f' title="{escape(chr(10).join(reasons.get((g, t), [NAMES[worst[g, t]]])))}" '
        f'style="background:{COLOURS[worst[g, t]]}">{g}/{"all" if t == 0 else t}</span>'
        for g, t in sorted(worst))
    problems = sorted((p for p in document.get("problems", []) if p["grade"] > 0),
                      key=lambda p: (-p["grade"], p["io_group"], p["tile"], p["check"]))
    items = "".join(
        f'<li data-grade="{p["grade"]}"><b style="color:{COLOURS[p["grade"]]}">'
        f'{NAMES[p["grade"]]}</b> {escape(p["check"])}: {escape(p["reason"])}</li>'
        for p in problems[:STRIP_REASONS])
    more = (f'<li><a href="/api/quality">{len(problems) - STRIP_REASONS} more</a></li>'
            if len(problems) > STRIP_REASONS else "")
    reference = escape(document.get("reference") or "none")
    return (f'<div class="quality" id="quality"><h2>Quality <small>(io_group/tile, '
            f'reference run: {reference}; <a href="/api/quality">JSON</a>)</small></h2>'
            f'<div class="strip">{boxes}</div><ul class="reasons">{items}{more}</ul></div>')


QUALITY_STYLE = """
div.quality { background: #fff; border-radius: 6px; padding: .6em 1em; margin-bottom: 1.2em;
                  box-shadow: 0 1px 3px rgba(0,0,0,.15); }
div.quality h2 { font-size: 1.1em; margin: .2em 0 .5em; }
.strip { display: flex; flex-wrap: wrap; gap: .3em; }
.tile-grade { color: #fff; font-weight: bold; padding: .2em .5em; border-radius: 3px;
              font-size: .85em; }
ul.reasons { margin: .5em 0 0; padding-left: 1.2em; font-size: .9em; }
"""
