"""Plot plugin discovery: which classes in which modules are plots.

Rule: a plot is a class bound at module level in a module of ``plotters/``, of
a ``--plugin-dir`` or of ``LARPIX_MONITOR_PLUGIN_PATH``, that

* was defined in that module (``cls.__module__`` is the module's name, which
  holds for classes that a factory makes at import time),
* has a ``__call__`` method of its own or inherited (not just ``type.__call__``),
* is bound to a name that does not start with ``_``.

The plot's name is the module-level name the class is bound to: its class name,
or the name a factory stored it under (``PixelMap_1_3``). Modules whose file
name starts with ``_`` are helpers and are not scanned.

Order of precedence when two modules define the same plot name: the plugin
directories first (flags, then environment, as given), then the built-in
``plotters/``. The first definition wins, so a plugin directory can replace a
built-in plot; the shadowed ones are logged.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import pkgutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import matplotlib

# Before any plugin (or anything else) imports pyplot: no display, no GUI threads.
matplotlib.use("Agg")

log = logging.getLogger(__name__)

BUILTIN_PACKAGE = "plotters"
PLUGIN_MODULE_PREFIX = "larpix_monitor_plugin"


@dataclass
class PlotCatalog:
    """Every plot that loaded, and every module that did not (with why)."""

    plots: dict[str, type] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def is_builtin(cls: type) -> bool:
    """A plot of this package's ``plotters/`` (trusted not to write into its packets)."""
    return cls.__module__.startswith(BUILTIN_PACKAGE + ".")


def is_plot_class(module: ModuleType, name: str, obj: object) -> bool:
    if name.startswith("_") or not isinstance(obj, type):
        return False
    if obj.__module__ != module.__name__:
        return False
    return any("__call__" in vars(klass) for klass in obj.__mro__[:-1])


def plots_of(module: ModuleType) -> dict[str, type]:
    return {name: obj for name, obj in vars(module).items() if is_plot_class(module, name, obj)}


def one_line_reason(exc: BaseException) -> str:
    """The last line of the traceback, plus where in the module it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (line {frames[-1].lineno} of {Path(frames[-1].filename).name})" if frames else ""
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" (line {exc.lineno})"
        return f"SyntaxError: {exc.msg}{where}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}{where}"


def _plugin_module_name(path: Path) -> str:
    # Unique per file, so two directories may both hold ``rates.py`` and none
    # shadows a standard module (the seed shipped a plugin module called ``test``).
    digest = hashlib.blake2b(str(path.resolve().parent).encode(), digest_size=4).hexdigest()
    return f"{PLUGIN_MODULE_PREFIX}_{digest}_{path.stem}"


def import_plugin_file(path: Path) -> ModuleType:
    """Import one plugin file under a unique name; its directory is importable for helpers."""
    name = _plugin_module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _builtin_modules() -> list[tuple[str, str]]:
    """(module name, file) of every non-helper module of ``plotters/``."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return [(f"{BUILTIN_PACKAGE}.{info.name}", str(Path(package.__path__[0]) / info.name))
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
            if not info.name.startswith("_")]


def _plugin_files(plugin_dirs: list[Path], catalog: PlotCatalog) -> list[Path]:
    files: list[Path] = []
    for folder in plugin_dirs:
        if not folder.is_dir():
            catalog.failures[str(folder)] = "plugin directory does not exist"
            continue
        files += sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    return files


def _add(catalog: PlotCatalog, module: ModuleType, where: str) -> None:
    for name, cls in plots_of(module).items():
        if name in catalog.plots:
            log.info("plot %s of %s is shadowed by %s", name, where,
                     catalog.plots[name].__module__)
            continue
        catalog.plots[name] = cls


def discover_plots(plugin_dirs: list[Path]) -> PlotCatalog:
    """Import every plugin and built-in plot module; failures are recorded, not raised."""
    catalog = PlotCatalog()
    for path in _plugin_files(plugin_dirs, catalog):
        try:
            module = import_plugin_file(path)
        except (Exception, SystemExit) as exc:  # any error in a plugin is the plugin's
            catalog.failures[str(path)] = one_line_reason(exc)
            continue
        _add(catalog, module, str(path))
    for module_name, where in _builtin_modules():
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:
            catalog.failures[where + ".py"] = one_line_reason(exc)
            continue
        _add(catalog, module, module_name)
    return catalog
