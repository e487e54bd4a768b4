"""The package's layers (issue 18): no module imports one from a layer above it.

Layers, from the bottom (README "Layout", docs/architecture.md):
- the top-level modules other than the CLI: settings, errors, atomic I/O, table schema;
- `data/`: the canonical tables' contract, their readers, the engines, the sample;
- `core/`: the statistics, pure (they may use the contract's table definitions);
- `artifacts/`: every artifact's name once (`__init__`, importing nothing) and the readers that
  build core objects from the files;
- `report/`: rendering charts, pages, notebooks and the model card from artifacts;
- `exports/`: the CRM formats and `leadcal push`;
- `stages/`: one module per DVC stage, reading and writing the project's files;
- `commands/`: `leadcal init`, `score`, `plan`;
- `cli.py`: the entry point.
A module may import its own layer and those below. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO
from tests.test_dvc_consistency import imported_modules, reachable

PACKAGE = REPO / "pipeline"
ORDER = ["", "data", "core", "artifacts", "report", "exports", "stages", "commands", "cli"]


def layer_of(path: Path) -> str:
    """The layer a module of the package belongs to: its folder under pipeline/, '' for the
    top-level modules, 'cli' for the entry point."""
    parts = path.relative_to(PACKAGE).parts
    if parts == ("cli.py",):
        return "cli"
    return parts[0] if len(parts) > 1 else ""


def upward_imports(root: Path = PACKAGE) -> list[str]:
    """Every import of a module from a higher layer, as 'importer -> imported'."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rank = ORDER.index(layer_of(path))
        for imported in sorted(imported_modules(path)):
            if ORDER.index(layer_of(imported)) > rank:
                found.append(f"{path.relative_to(REPO)} -> {imported.relative_to(REPO)}")
    return found


def test_every_module_is_in_a_known_layer() -> None:
    unknown = sorted({layer_of(p) for p in PACKAGE.rglob("*.py")} - set(ORDER))
    assert not unknown, f"pipeline/ has folders that are no layer: {unknown} (add them to ORDER and the docs)"


def test_no_module_imports_a_layer_above_it() -> None:
    found = upward_imports()
    assert not found, "imports that point up the layers:\n" + "\n".join(found)


def test_the_statistics_take_explicit_settings_and_read_no_file() -> None:
    """core/ gets arrays, frames and settings from the stages: never the whole Params (its paths
    would let it read files), nor any module that reads or writes files, directly or through
    the modules it imports."""
    files = {PACKAGE / name for name in ("io.py", "staging.py", "spreadsheet.py")} | set(
        (PACKAGE / "artifacts").rglob("*.py"))
    core = sorted((PACKAGE / "core").rglob("*.py"))
    found = []
    for path in core:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline.params":
                found += [f"{path.relative_to(REPO)}: Params" for alias in node.names if alias.name == "Params"]
            elif isinstance(node, ast.ImportFrom) and node.module == "pipeline":
                found += [f"{path.relative_to(REPO)}: pipeline.params" for alias in node.names if alias.name == "params"]
            elif isinstance(node, ast.Import):
                found += [f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name == "pipeline.params"]
    found += [f"core/ reaches {p.relative_to(REPO)}" for p in sorted(reachable(core) & files)]
    assert not found, "core/ modules that take Params or do I/O:\n" + "\n".join(found)
