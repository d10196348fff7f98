"""HTTP routes: metrics, plot images, the gallery, health.

No part of a request path is ever joined to a filesystem path: images are
looked up by name among the ones the renderer holds in memory, and anything
else is 404. Ingest and rendering run on their own threads, so requests never
wait for them: lookups that take microseconds (images, listings, health) run
on the event loop, and the one handler that can take milliseconds, building
the /metrics exposition, is a plain function that FastAPI runs in its thread
pool.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.metrics import DetectorMetrics, exposition
from exporter.web.channels import channels_router
from exporter.web.gallery import CONTENT_SECURITY_POLICY, plot_listing, render_gallery
from exporter.web.login import TokenAuth, login_router
from exporter.web.quality import QualitySource, quality_router, quality_strip
from exporter.web.status_strip import StatusStrip

if TYPE_CHECKING:
    from exporter.render import PlotImage
    from exporter.source import FileStatus


class MonitorSource(Protocol):
    """What the ingest side shows the web side."""

    def is_ready(self) -> bool: ...
    def is_alive(self) -> bool: ...
    def files(self) -> list[FileStatus]: ...


class PlotSource(Protocol):
    def images(self) -> list[PlotImage]: ...
    def image(self, file: str, plot: str) -> PlotImage | None: ...


class NoPlots:
    """The plot source of ``--no-plots``."""

    def images(self) -> list[PlotImage]:
        return []

    def image(self, file: str, plot: str) -> PlotImage | None:
        return None


def _quoted(etag: str) -> str:
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


def _etag_matches(if_none_match: str, etag: str) -> bool:
    wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in wanted or etag.removeprefix("W/") in wanted


def _not_modified_since(if_modified_since: str, updated: float) -> bool:
    try:
        return int(updated) <= parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError):
        return False


def _client_has_it(request: Request, etag: str, updated: float) -> bool:
    """RFC 9110: If-None-Match decides when present; If-Modified-Since only otherwise."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    if_modified_since = request.headers.get("if-modified-since")
    return if_modified_since is not None and _not_modified_since(if_modified_since, updated)


def _not_found() -> Response:
    return JSONResponse({"detail": "not found"}, status_code=404)


def create_app(registry: CollectorRegistry, monitor: MonitorSource,
               plots: PlotSource | None = None, auth_token: str | None = None,
               detector: DetectorMetrics | None = None,
               quality: QualitySource | None = None) -> FastAPI:
    plot_source: PlotSource = plots or NoPlots()
    strip = StatusStrip(detector) if detector is not None else None
    app = FastAPI(title="larpix-monitor", version=__version__,
                  description="Live data-quality monitor for LArPix pixel detectors.")

    def route(path: str, **options: Any) -> Callable[[Callable], Callable]:
        """GET (documented) and HEAD (same handler, not listed twice in the schema)."""
        def register(handler: Callable) -> Callable:
            app.add_api_route(path, handler, methods=["GET"], **options)
            app.add_api_route(path, handler, methods=["HEAD"], include_in_schema=False,
                              **options)
            return handler
        return register

    @route("/metrics", response_class=Response,
           summary="Prometheus exposition (OpenMetrics when the Accept header asks)")
    def metrics(request: Request) -> Response:
        body, content_type = exposition(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @route("/", response_class=HTMLResponse,
           summary="Gallery of the latest plots of every file")
    def gallery() -> HTMLResponse:
        page = render_gallery(monitor.files(), plot_source.images(),
                              strip=strip.html() if strip is not None else "",
                              quality=quality_strip(quality.document()) if quality else "")
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                           "Cache-Control": "no-cache"})

    @route("/api/plots",
           summary="Every plot: file, plot, url, updated (unix time)")
    async def api_plots() -> JSONResponse:
        return JSONResponse(plot_listing(plot_source.images()),
                            headers={"Cache-Control": "no-cache"})

    @route("/plots/{file}/{plot}.png", response_class=Response,
           summary="Latest PNG of one plot of one file")
    async def plot_image(file: str, plot: str, request: Request) -> Response:
        image = plot_source.image(file, plot)
        if image is None:
            return _not_found()
        etag = _quoted(image.etag)
        headers = {"ETag": etag, "Last-Modified": formatdate(image.updated, usegmt=True),
                   "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if _client_has_it(request, etag, image.updated):
            return Response(status_code=304, headers=headers)
        return Response(image.png, media_type="image/png", headers=headers)

    @route("/healthz", summary="Liveness")
    async def healthz() -> JSONResponse:
        if monitor.is_alive():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "ingest stopped"}, status_code=503)

    @route("/readyz", summary="Ready once the first scan is done")
    async def readyz() -> JSONResponse:
        if monitor.is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    if detector is not None:
        app.include_router(channels_router(detector))
    if quality is not None:
        app.include_router(quality_router(quality))
    if auth_token:
        app.include_router(login_router(auth_token))
        app.add_middleware(TokenAuth, token=auth_token)
    return app

