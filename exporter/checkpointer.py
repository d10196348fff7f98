"""Count -> checkpoint -> publish: the order that keeps counters continuous across restarts.

The ingest loop counts rows into the metric components, then ``commit`` writes
their arrays and the read cursors in one atomic checkpoint, and only then lets
scrapes see the new counts (``publish``). So any count a scrape has shown is
on disk with the cursors that made it: after SIGTERM or SIGKILL the next
process starts from that checkpoint, at no less than anything scraped, and
reads on from exactly the rows it had not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from exporter.metrics.checkpoint import Published, gather, scatter
from exporter.source.checkpoint import CheckpointStore
from exporter.source.cursor import Cursor

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the checkpoint file and the published metrics in step."""

    def __init__(self, store: CheckpointStore, parts: Mapping[str, Published]) -> None:
        self.store = store
        self.parts = parts
        self._failing = False
        #: What the parts had counted at the last commit (their change counters).
        self.committed: tuple[int, ...] | None = None
        #: Seconds the last commit took (gather, write, fsync, publish).
        self.last_seconds = 0.0

    def restore(self) -> dict[str, Cursor]:
        """Load the last checkpoint into the parts, publish it, and return its cursors."""
        checkpoint = self.store.load()
        blank = gather(self.parts)
        try:
            scatter(self.parts, checkpoint.metrics)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            log.warning("%s: checkpoint counts unusable (%s); counting from zero",
                        self.store.path, err)
            scatter(self.parts, blank)
            checkpoint.cursors.clear()
        if checkpoint.cursors:
            log.info("%s: counters continue from the checkpoint (%d files)", self.store.path,
                     len(checkpoint.cursors))
        gather(self.parts)  # what publish() shows is what a checkpoint() saw
        self.publish()
        return checkpoint.cursors

    def commit(self, cursors: Iterable[Cursor], changes: tuple[int, ...]) -> bool:
        """Write the counts and cursors, then publish, if ``changes`` (the parts' change
        counters) moved since the last commit; True if it did. If the checkpoint cannot be
        written, that is said once. Metrics still go on then (a monitor that goes blind when its
        disk fills helps nobody), but a restart continues from the last checkpoint written."""
        if changes == self.committed:
            return False
        self.committed = changes
        started = time.perf_counter()
        try:
            self.store.save(list(cursors), gather(self.parts))
        except OSError as err:
            if not self._failing:
                log.error("%s: cannot write the checkpoint (%s); a restart would continue "
                          "from the last one written", self.store.path, err.strerror or err)
            self._failing = True
            self.publish()
            return True
        if self._failing:
            log.info("%s: checkpoint written again", self.store.path)
            self._failing = False
        self.publish()
        self.last_seconds = time.perf_counter() - started
        return True

    def publish(self) -> None:
        for part in self.parts.values():
            part.publish()
