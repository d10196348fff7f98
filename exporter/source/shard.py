"""``--shard K/N``: N exporters on one shared directory read disjoint files.

A file belongs to shard ``crc32(name) mod N``. The hash is of the file's
name (not its path, so every host that mounts the directory elsewhere agrees;
not Python's ``hash()``, which is salted per process), so each file is read
by exactly one exporter, on every host and after every restart, without the
exporters talking to each other.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from exporter.source.watcher import DirectoryWatcher, FileChange

log = logging.getLogger(__name__)

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the files whose name hashes to ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} is not one of 0 to {self.count - 1}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` -> Shard; a ValueError says what is wrong in one line."""
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not K/N (e.g. 0/2: the first of two exporters)")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(name: str, count: int) -> int:
    """The shard a file name belongs to, the same on every host and in every process."""
    return zlib.crc32(name.encode("utf-8")) % count


class ShardedWatcher(DirectoryWatcher):
    """A directory watcher that reports only the files of one shard."""

    def __init__(self, directory: Path, pattern: str, shard: Shard,
                 use_events: bool = True) -> None:
        super().__init__(directory, pattern, use_events)
        self.shard = shard

    def scan(self) -> list[FileChange]:
        return [c for c in super().scan() if self.shard.owns(c.path.name)]


def watcher_for(directory: Path, pattern: str, shard: Shard | None,
                use_events: bool = True) -> DirectoryWatcher:
    """The watcher of ``serve``: every matching file, or only those of ``shard``."""
    if shard is None or shard.count == 1:
        return DirectoryWatcher(directory, pattern, use_events)
    log.info("shard %s: reading only the files whose name hashes to %d of %d",
             shard, shard.index, shard.count)
    return ShardedWatcher(directory, pattern, shard, use_events)
