"""HTTP: the FastAPI routes and the HTML gallery."""

from exporter.web.app import create_app

__all__ = ["create_app"]
