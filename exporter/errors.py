"""Errors a user can cause with bad input: one line, naming file and reason."""

from __future__ import annotations


class InputError(Exception):
    """A file the monitor cannot use.

    ``reason`` is a short, stable label (it becomes the ``reason`` label of
    ``larpix_monitor_read_errors_total``); ``str(error)`` is the one line a
    person reads: ``<path>: <detail>``.
    """

    def __init__(self, path: str, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail


class TransientReadError(InputError):
    """The file was caught mid-write; the same read may succeed on the next poll."""
