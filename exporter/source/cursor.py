"""The read position in one data file: what the reader advances and the state store keeps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Cursor:
    """What has been consumed of one file (persisted by the state store)."""

    path: str
    inode: int
    size: int
    #: Dataset rows consumed: packets (packet files) or messages (raw files).
    rows: int
    format: str | None
    #: The ``created`` time in the file's LArPix header (None: not seen yet, or the file
    #: has none). With the inode, it tells a file rewritten in place from the one read.
    created: float | None = None
