"""What has been consumed of each data file, kept on disk so a restart resumes there.

The ingest loop saves the cursors only after the rows they cover have been
counted, and the file is replaced atomically (temporary file, fsync,
``os.replace``), so after a crash the saved state never claims a row that was
not counted and never loses one that was saved.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from exporter.source.cursor import Cursor

log = logging.getLogger(__name__)

STATE_FILE_NAME = ".larpix-monitor-state.json"
STATE_VERSION = 1
FORMATS = ("packet", "raw", None)


class StateStore:
    """Cursors of every watched file, in one JSON file (by default under the plot directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_saved: str | None = None

    @classmethod
    def in_plot_dir(cls, plot_dir: Path) -> StateStore:
        return cls(plot_dir / STATE_FILE_NAME)

    def load(self) -> dict[str, Cursor]:
        """Saved cursors by path; an unusable state file is reported and ignored."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.warning("%s: cannot read the saved state (%s); starting afresh",
                        self.path, err.strerror)
            return {}
        try:
            cursors = _parse(json.loads(text))
        except (ValueError, TypeError, KeyError) as err:
            log.warning("%s: saved state is unusable (%s); starting afresh", self.path, err)
            return {}
        self._last_saved = text
        return {c.path: c for c in cursors}

    def save(self, cursors: Iterable[Cursor]) -> None:
        """Replace the state file atomically; does nothing when nothing changed."""
        text = json.dumps({
            "version": STATE_VERSION,
            "files": [
                {"path": c.path, "inode": c.inode, "size": c.size, "rows": c.rows,
                 "format": c.format}
                for c in sorted(cursors, key=lambda c: c.path)
            ],
        }, indent=1)
        if text == self._last_saved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp",
                                   dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)
        self._last_saved = text


def _parse(document: object) -> list[Cursor]:
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise ValueError(f"not a version {STATE_VERSION} state file")
    cursors = []
    for entry in document["files"]:
        cursor = Cursor(path=str(entry["path"]), inode=int(entry["inode"]),
                        size=int(entry["size"]), rows=int(entry["rows"]),
                        format=entry["format"])
        if cursor.rows < 0 or cursor.size < 0 or cursor.format not in FORMATS:
            raise ValueError(f"bad entry for {cursor.path}")
        cursors.append(cursor)
    return cursors


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX needs the directory synced too)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
