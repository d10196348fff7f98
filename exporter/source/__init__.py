"""Files -> numpy chunks: format detection, incremental reading, watching, cursors on disk."""

from exporter.source.cursor import Cursor
from exporter.source.reader import FileReader
from exporter.source.state import STATE_FILE_NAME, StateStore
from exporter.source.status import FileStatus
from exporter.source.watcher import DirectoryWatcher, FileChange, FileStat

__all__ = ["STATE_FILE_NAME", "Cursor", "DirectoryWatcher", "FileChange", "FileReader",
           "FileStat", "FileStatus", "StateStore"]
