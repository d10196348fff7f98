"""The checkpoint protocol: metric state as named numpy arrays, so counters survive restarts.

Every stateful metric component exposes ``checkpoint() -> dict[str, ndarray]``
and ``restore(state) -> None``. Arrays only, so the whole checkpoint is one
atomic ``.npz`` write beside the read cursors (see ``exporter.source.checkpoint``).
Aggregates (``DetectorMetrics``) gather their parts' dicts under prefixes
(``part.key``); ``gather`` and ``scatter`` do that for any mapping of parts.

Components that are published (the exposition shows them) also expose
``publish()``: after the checkpoint that holds their counts is on disk, so a
scrape never shows a count that a crash could take back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

State = dict[str, np.ndarray]

_SEPARATOR = "."


class Checkpointed(Protocol):
    """A metric component whose counts continue across restarts."""

    def checkpoint(self) -> State: ...

    def restore(self, state: State) -> None: ...


class Published(Checkpointed, Protocol):
    """A checkpointed component whose scrapes show only checkpointed counts."""

    def publish(self) -> None: ...


class GatedVersion:
    """The ``version`` of a published component: ungated, every change; gated, every publish.

    Subclasses bump ``_changes`` at every change and keep in ``_published`` the
    (``_changes``, snapshot) that scrapes see, or None before the first.
    """

    gated: bool = False
    _changes: int = 0
    _published: tuple[int, object] | None = None

    @property
    def version(self) -> int:
        """Changes with every change (gated: every publish): a cache of the exposition is
        valid while it holds."""
        if self.gated:
            return self._published[0] if self._published is not None else -1
        return self._changes

    @property
    def changed(self) -> int:
        """Changes with every change, published or not."""
        return self._changes


def gather(parts: Mapping[str, Checkpointed]) -> State:
    """Every part's arrays, keyed ``name.key`` (parts may nest: keys then have more dots)."""
    return {f"{name}{_SEPARATOR}{key}": array
            for name, part in parts.items() for key, array in part.checkpoint().items()}


def scatter(parts: Mapping[str, Checkpointed], state: State) -> None:
    """Hand each part its own arrays back, in the order of ``parts`` (a part may depend on
    an earlier one, e.g. counts per chip slot on the chip slots). A part the state does not
    hold (new since the checkpoint was written) keeps its fresh, empty state."""
    for name, part in parts.items():
        own = section(state, name)
        if own:
            part.restore(own)


def section(state: State, name: str) -> State:
    """The arrays of one part, without its prefix."""
    prefix = name + _SEPARATOR
    return {key[len(prefix):]: array for key, array in state.items() if key.startswith(prefix)}


def sparse(array: np.ndarray) -> State:
    """Counts as their non-zero entries: at 2x2 scale most (chip, type) cells stay 0."""
    flat = np.flatnonzero(array)
    return {"shape": np.asarray(array.shape, np.int64), "index": flat.astype(np.int64),
            "value": array.reshape(-1)[flat]}


def dense(state: State, dtype: np.dtype | type = np.int64) -> np.ndarray:
    """The array ``sparse`` described."""
    array = np.zeros(tuple(int(n) for n in state["shape"]), dtype)
    array.reshape(-1)[state["index"]] = state["value"]
    return array


def keyed(counts: Mapping[str, int | float]) -> State:
    """Counts by label value (read-error reasons, plot names) as two arrays."""
    names = sorted(counts)
    return {"keys": np.array(names, dtype=np.str_),
            "values": np.array([counts[n] for n in names], np.float64)}


def unkeyed(state: State) -> dict[str, float]:
    if "keys" not in state:
        return {}
    return {str(k): float(v) for k, v in zip(state["keys"], state["values"], strict=True)}


class AttributeArrays:
    """Count arrays a class keeps as its own attributes, checkpointed as one component."""

    def __init__(self, owner: object, names: tuple[str, ...]) -> None:
        self._owner = owner
        self._names = names

    def checkpoint(self) -> State:
        return {f"{name}{_SEPARATOR}{key}": array for name in self._names
                for key, array in sparse(getattr(self._owner, name)).items()}

    def restore(self, state: State) -> None:
        for name in self._names:
            kept = getattr(self._owner, name)
            setattr(self._owner, name, dense(section(state, name), kept.dtype))
