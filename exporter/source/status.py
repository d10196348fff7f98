"""How one watched file stands, as the gallery and the logs describe it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FileStatus:
    """One watched file as the gallery and logs describe it."""

    path: str
    file: str  # stem: the file's name in plot URLs
    state: str  # active | idle | waiting | error
    rows: int
    format: str | None
    last_read: float | None  # unix time new rows were last counted
    error: str | None
