"""Files -> numpy chunks: formats, incremental reading, watching, cursors and counts on disk."""

from exporter.source.checkpoint import CHECKPOINT_FILE_NAME, Checkpoint, CheckpointStore
from exporter.source.cursor import Cursor
from exporter.source.reader import FileReader
from exporter.source.status import FileStatus
from exporter.source.watcher import DirectoryWatcher, FileChange, FileStat

__all__ = ["CHECKPOINT_FILE_NAME", "Checkpoint", "CheckpointStore", "Cursor",
           "DirectoryWatcher", "FileChange", "FileReader", "FileStat", "FileStatus"]
