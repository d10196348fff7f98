"""Read cursors and metric counts, on disk together: what a restart continues from.

One ``.npz`` holds the cursors of every watched file and the arrays of every
checkpointed metric component, and it is replaced atomically (temporary file,
fsync, ``os.replace``, fsync of the directory). So whatever instant a process
dies at, the file on disk pairs every count with exactly the rows that made
it: the next process neither counts a row twice nor loses one.

A checkpoint that cannot be read starts the monitor from zero with one log
line; it never stops it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporter.source.cursor import Cursor

log = logging.getLogger(__name__)

CHECKPOINT_FILE_NAME = ".larpix-monitor-checkpoint.npz"
CHECKPOINT_VERSION = 2
FORMATS = ("packet", "raw", None)
#: Keys of the file's own entries; metric arrays are under ``metrics/``.
_CURSORS, _VERSION, _METRICS = "cursors", "version", "metrics/"


@dataclass
class Checkpoint:
    cursors: dict[str, Cursor] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)


class CheckpointStore:
    """The checkpoint file (by default under the plot directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Bytes of the last checkpoint written (the benchmark reports it).
        self.last_size = 0

    @classmethod
    def in_plot_dir(cls, plot_dir: Path) -> CheckpointStore:
        return cls(plot_dir / CHECKPOINT_FILE_NAME)

    def load(self) -> Checkpoint:
        """The last checkpoint; an unusable one is reported in one line and ignored."""
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            if int(arrays[_VERSION][0]) != CHECKPOINT_VERSION:
                raise ValueError(f"not a version {CHECKPOINT_VERSION} checkpoint")
            cursors = _parse_cursors(json.loads(arrays[_CURSORS].tobytes()))
        except FileNotFoundError:
            return Checkpoint()
        except OSError as err:
            log.warning("%s: cannot read the checkpoint (%s); counting from zero",
                        self.path, err.strerror or err)
            return Checkpoint()
        except (ValueError, TypeError, KeyError, IndexError, zipfile.BadZipFile,
                EOFError) as err:
            log.warning("%s: checkpoint unusable (%s); counting from zero", self.path, err)
            return Checkpoint()
        metrics = {k[len(_METRICS):]: v for k, v in arrays.items() if k.startswith(_METRICS)}
        return Checkpoint({c.path: c for c in cursors}, metrics)

    def save(self, cursors: Iterable[Cursor], metrics: dict[str, np.ndarray]) -> None:
        """Replace the checkpoint atomically with these cursors and these counts."""
        text = json.dumps([dataclasses.asdict(c) for c in sorted(cursors, key=lambda c: c.path)])
        arrays = {_VERSION: np.array([CHECKPOINT_VERSION]),
                  _CURSORS: np.frombuffer(text.encode(), np.uint8),
                  **{_METRICS + k: v for k, v in metrics.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp",
                                   dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
                self.last_size = f.tell()
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)


def _parse_cursors(entries: object) -> list[Cursor]:
    if not isinstance(entries, list):
        raise ValueError("cursors are not a list")
    # a cursor saved before files had an identity has no "created": it is taken from
    # the file at its next read (the inode and size rule holds until then)
    cursors = [Cursor(**entry) for entry in entries]
    for cursor in cursors:
        if (cursor.rows < 0 or cursor.size < 0 or cursor.format not in FORMATS
                or not isinstance(cursor.created, (int, float, type(None)))):
            raise ValueError(f"bad entry for {cursor.path}")
    return cursors


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX needs the directory synced too)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
