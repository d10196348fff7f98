"""``GET /api/channels`` and ``GET /api/disable-list``: the per-channel table of a file.

``file=STEM`` names a file by its stem among those the detector keeps tables
for (default: the one that received data last); no request path reaches the
file system. Building a table takes a few milliseconds at 2x2 scale and is
cached until new rows arrive, so the handlers are plain functions that FastAPI
runs in its thread pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from exporter.metrics import ChannelTable, DetectorMetrics
from exporter.metrics.channels import IDLE_SECONDS
from exporter.render.geometry import shared_geometry
from exporter.web import channel_rows
from exporter.web.channel_rows import BadQuery

_NO_CACHE = {"Cache-Control": "no-cache"}


def _bad(reason: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status, headers=_NO_CACHE)


def find_table(detector: DetectorMetrics, stem: str | None) -> ChannelTable | None:
    """The table of the file whose stem is ``stem`` (None or empty, as a dashboard's empty
    ``file=`` sends it: the file that received data last)."""
    sources = detector.channels.sources()
    if stem:
        sources = [s for s in sources if Path(s).stem == stem]
    return detector.channel_table(sources[0]) if sources else None


def channels_router(detector: DetectorMetrics) -> APIRouter:
    router = APIRouter()

    def route(path: str, **options: Any):
        def register(handler):
            router.add_api_route(path, handler, methods=["GET"], **options)
            router.add_api_route(path, handler, methods=["HEAD"], include_in_schema=False,
                                 **options)
            return handler
        return register

    def missing(file: str | None) -> JSONResponse:
        if file is None:
            return _bad("no per-channel table yet: no data read", 404)
        known = ", ".join(Path(s).stem for s in detector.channels.sources()) or "none"
        if any(Path(s).stem == file for s in detector.channels.waiting_files()):
            return _bad(f"file {file!r} waits for a per-channel table: the monitor keeps "
                        f"{detector.channels.max_files} (now {known}) and gives it one when "
                        f"one of those has had no rows for {IDLE_SECONDS:g} s", 404)
        return _bad(f"no per-channel table for file {file!r} (tables: {known})", 404)

    @route("/api/channels", summary="Per-channel table of a file: filters, sort, limit, CSV")
    def channels(io_group: int | None = None, tile: int | None = None,
                 io_channel: int | None = None, chip_id: int | None = None,
                 status: str | None = None, sort: str = "rate_hz", order: str = "desc",
                 limit: int = Query(100, description="rows shown; 0 = all"),
                 format: str = Query("json", pattern="^(json|csv)$"),
                 file: str | None = None) -> Response:
        query = channel_rows.Query(io_group, tile, io_channel, chip_id, status, sort, order,
                                   limit)
        table = find_table(detector, file)
        try:
            query.check()
            if table is None:
                return missing(file)
            total, columns = channel_rows.select(table, query, shared_geometry())
        except BadQuery as error:
            return _bad(str(error))
        stem = Path(table.file).stem
        if format == "csv":
            return Response(channel_rows.as_csv(columns), media_type="text/csv",
                            headers={**_NO_CACHE, "Content-Disposition":
                                     f'inline; filename="{stem}_channels.csv"'})
        return JSONResponse({"file": stem, "rate_window": table.rate_window,
                             "hot_rate": table.hot_rate, "matched": total,
                             "rows": channel_rows.as_records(columns)}, headers=_NO_CACHE)

    @route("/api/disable-list",
           summary="Hot channels in the DAQ's disable-list format (chip key -> channels)")
    def disable_list(min_rate: float | None = None, window: str = "rate",
                     key: str = "chip", file: str | None = None) -> Response:
        rate_window = detector.rate_window
        if window not in ("rate", "run"):
            try:
                seconds = float(window)
            except ValueError:
                return _bad(f"window must be run or {rate_window:g} (the rate window), "
                            f"not {window!r}")
            if seconds != rate_window:
                return _bad(f"window must be run or {rate_window:g} (the rate window), "
                            f"not {window!r}")
            window = "rate"
        if key not in channel_rows.KEYS:
            return _bad(f"key must be chip or tile, not {key!r}")
        table = find_table(detector, file)
        if table is None:
            return missing(file)
        span = None
        if window == "run":
            span = detector.data_span(table.file)
            if span is None:
                return _bad(f"file {Path(table.file).stem!r} has no data time yet", 409)
        threshold = detector.hot_rate if min_rate is None else min_rate
        return JSONResponse(channel_rows.disable_list(table, threshold, key, span),
                            headers=_NO_CACHE)

    return router
