"""When each watched file's plots are drawn: at most every ``--interval``, never two at
once per file, and idle figures closed on a helper thread (the renderer may be busy)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from exporter.render import PlotRenderer
from exporter.watched import Watched


class PlotSchedule:
    def __init__(self, renderer: PlotRenderer, interval: float, flush_interval: float,
                 now: float) -> None:
        self.renderer = renderer
        self.interval = interval
        self.flush_interval = flush_interval
        self._idle_checked = now
        self._idle_closer: threading.Thread | None = None

    def render_due(self, files: Iterable[Watched], now: float) -> None:
        for watched in files:
            if not watched.dirty or (watched.render is not None and not watched.render.done()):
                continue
            if watched.replay is not None:
                continue  # drawn once the replay has given its plots the whole file
            if watched.rendered_at is not None and now - watched.rendered_at < self.interval:
                continue
            watched.dirty = False
            watched.rendered_at = now
            watched.render = self.renderer.render(watched.path)

    def close_idle_figures(self, now: float) -> None:
        every = min(60.0, self.flush_interval)
        if now - self._idle_checked < every:
            return
        if self._idle_closer is not None and self._idle_closer.is_alive():
            return
        self._idle_checked = now
        self._idle_closer = threading.Thread(
            target=self.renderer.close_idle, args=(self.flush_interval,),
            name="close-idle", daemon=True)
        self._idle_closer.start()
