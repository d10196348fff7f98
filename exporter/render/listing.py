"""`larpix-monitor plots`: the plots that discovery finds, one line each."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

from exporter.render.discovery import PlotCatalog, discover_plots, is_builtin


def _origin(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    where = getattr(module, "__file__", None) or cls.__module__
    return cls.__module__ if is_builtin(cls) else str(where)


def _listing(catalog: PlotCatalog) -> list[str]:
    rows = []
    for name, cls in sorted(catalog.plots.items()):
        doc = inspect.cleandoc(vars(cls).get("__doc__") or "").split("\n")[0]
        on_request = "" if getattr(cls, "default", True) else "(only with --plots) "
        rows.append((name, _origin(cls), on_request + doc))
    name_width = max((len(r[0]) for r in rows), default=0)
    where_width = max((len(r[1]) for r in rows), default=0)
    lines = [f"{n:<{name_width}}  {w:<{where_width}}  {d}".rstrip() for n, w, d in rows]
    lines += [f"FAILED {where}: {reason}" for where, reason in sorted(catalog.failures.items())]
    return lines


def list_plots_command(plugin_dirs: list[Path]) -> int:
    """``larpix-monitor plots``: what loaded (name, module), what failed and why.

    Exit status 1 when a module or plugin directory failed.
    """
    catalog = discover_plots(plugin_dirs)
    try:
        print("\n".join(_listing(catalog)), flush=True)
    except BrokenPipeError:  # e.g. piped into head: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if catalog.failures else 0
