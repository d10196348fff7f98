"""The folders are the architecture: no import runs against the data flow.

directory -> source -> Chunk -> {metrics, render} -> {web, disk}; the modules at the top of
``exporter/`` wire the parts together, and ``simulate`` stands apart (it writes files).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.paths import ROOT

EXPORTER = ROOT / "exporter"
PARTS = ("source", "metrics", "render", "web", "simulate")
#: What each part may import of the project besides itself and the shared leaf modules.
ALLOWED = {
    "source": set(),
    "metrics": set(),
    "render": set(),
    "web": {"source", "metrics", "render"},  # it serves what they publish
    "simulate": set(),
}
#: Leaf modules every part may use: the packet representation, errors, settings, version.
SHARED = {"exporter", "exporter.packets", "exporter.errors", "exporter.config"}


def project_imports(path: Path) -> set[str]:
    """Modules of ``exporter`` imported by ``path``, at run time or for type checking."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == "exporter"}
    return found


def part_of(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in PARTS else None


@pytest.mark.parametrize("part", PARTS)
def test_no_import_against_the_data_flow(part):
    wrong = []
    for path in sorted((EXPORTER / part).rglob("*.py")):
        for module in project_imports(path):
            other = part_of(module)
            if other == part or module in SHARED or other in ALLOWED[part]:
                continue
            if other is None and module.split(".")[1:2] != []:
                wrong.append(f"{path.relative_to(ROOT)} imports wiring module {module}")
            elif other is not None:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_modules_stay_small():
    sizes = {path.relative_to(ROOT): len(path.read_text().splitlines())
             for path in sorted(EXPORTER.rglob("*.py")) + sorted((ROOT / "plotters").glob("*.py"))}
    assert {path: n for path, n in sizes.items() if n > 400} == {}


def test_the_guard_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from exporter.metrics.detector import DetectorMetrics\n"
                      "if True:\n    import exporter.web.app\n")
    assert project_imports(module) == {"exporter.metrics.detector", "exporter.web.app"}
    assert part_of("exporter.web.app") == "web" and part_of("exporter.ingest") is None
