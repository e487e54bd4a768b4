"""dvc.yaml agrees with the code (issue 18): `dvc repro` must not skip a stage whose inputs changed.

DVC re-runs a stage only when one of its listed deps or params changed. Each stage declares its
params, data deps and outs once, in pipeline/stages/registry.py; dvc.yaml must list exactly
those, and they are checked here against what each stage really uses:
- **code**: every module of `pipeline/` in the stage's import closure (imports inside functions
  included) is a dep: a change to any of them can change the stage's outputs. The CLI itself
  (argument parsing, dispatch) is left out; the parts of it that shape a stage's params
  (`for_stage` -> pipeline.stages.mode) are followed.
- **params**: every setting a stage reads while it runs (recorded on a small sample) is declared,
  as the key or as its whole section;
- **data**: every file a stage reads or writes while it runs (recorded on the same sample) lies in
  one of its declared reads or writes.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline import params as params_module
from pipeline.params import Params
from pipeline.stages import registry
from tests.conftest import REPO, params_in

PACKAGE = REPO / "pipeline"
NOT_STAGE_CODE = {"pipeline/cli.py", "pipeline/__init__.py"}  # dispatch only: it changes no output


def _dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages keyed by their `leadcal` sub-command."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {spec["cmd"].split()[1]: spec for spec in stages.values()}


def _module_file(name: str) -> Path | None:
    """pipeline.x (or pipeline.x.y) -> its file, if it is a module of the package."""
    parts = name.split(".")
    if parts[0] != "pipeline":
        return None
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[Path]:
    """The package modules a file imports, at the top or inside functions."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
            module = node.module or ""
            if node.level:  # `from .x import y`: relative to the file's package
                package = path.relative_to(REPO).with_suffix("").parts[:-node.level]
                module = ".".join([*package, *([module] if module else [])])
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(f for f in map(_module_file, names) if f is not None)
    return found


def reachable(start: set[Path] | list[Path]) -> set[Path]:
    """`start` and every package module it imports, directly or through others."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_modules(path) - seen)
    return seen


def import_closure(start: set[Path]) -> set[str]:
    """Every package module reachable from `start`, as repository-relative paths."""
    return {p.relative_to(REPO).as_posix() for p in reachable(start) if not _docstring_only(p)} - NOT_STAGE_CODE


def _docstring_only(path: Path) -> bool:
    """A layer package's `__init__.py` that holds only its docstring: it changes no output, so
    it is not a dep (one with code in it is)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def stage_entry(stage: str) -> set[Path]:
    """The modules `leadcal <stage>` calls: the module of its declared entry, pipeline.stages.mode
    (cli.for_stage adjusts every stage's params after extract), and for the notebooks stage every
    module the notebooks import (they run in their own kernels)."""
    modules = {_module_file(registry.BY_NAME[stage].entry.split(":")[0])}
    if stage not in ("generate", "extract"):
        modules.add(PACKAGE / "stages" / "mode.py")
    if stage == "notebooks":
        for notebook in sorted((REPO / "notebooks").glob("*.py")):
            modules |= imported_modules(notebook)
    return modules


def missing_code_deps(stage: str, spec: dict) -> list[str]:
    deps = {d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])}
    return sorted(import_closure(stage_entry(stage)) - deps)


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_every_module_a_stage_imports_is_one_of_its_dvc_deps(stage: str) -> None:
    spec = _dvc_stages()[stage]
    missing = missing_code_deps(stage, spec)
    assert not missing, f"dvc.yaml stage {stage!r} imports {missing} but does not list them as deps"


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_every_code_dep_of_a_stage_is_imported_by_it(stage: str) -> None:
    """The other way round: a module listed as a dep that the stage never imports (one moved or
    no longer used) makes `dvc repro` re-run the stage for nothing and hides what it really uses."""
    deps = {d if isinstance(d, str) else next(iter(d)) for d in _dvc_stages()[stage].get("deps", [])}
    extra = sorted(d for d in deps if d.startswith("pipeline/") and d not in import_closure(stage_entry(stage)))
    assert not extra, f"dvc.yaml stage {stage!r} lists {extra} as deps but never imports them"


def test_the_import_walk_follows_imports_inside_functions(tmp_path: Path) -> None:
    """The closure must see a lazy import (`from pipeline import x` inside a function) too."""
    closure = import_closure({PACKAGE / "stages" / "thresholds.py"})
    assert "pipeline/core/scorecard.py" in closure  # thresholds scores with the points table
    assert "pipeline/params.py" in closure and "pipeline/stages/thresholds.py" in closure
    assert not NOT_STAGE_CODE & closure


# --------------------------------------------------------------------------- params read while running


def _sections() -> dict[type, str]:
    """Each settings class -> its top-level section of params.yaml ('' for Params itself)."""
    owner: dict[type, str] = {Params: ""}

    def walk(model: type, section: str) -> None:
        for field in model.model_fields.values():
            for kind in _model_types(field.annotation):
                if kind not in owner:
                    owner[kind] = section
                    walk(kind, section)

    for name, field in Params.model_fields.items():
        for kind in _model_types(field.annotation):
            owner[kind] = name
            walk(kind, name)
    return owner


def _model_types(annotation: object) -> list[type]:
    import typing

    args = typing.get_args(annotation)
    candidates = [annotation, *args, *(a for arg in args for a in typing.get_args(arg))]
    return [c for c in candidates if isinstance(c, type) and issubclass(c, params_module._Strict)]


@contextlib.contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Record every setting read: 'section.key' on a section's own class, the section for deeper
    classes (source.leads.path -> 'source'), the name for top-level values (seed, engine)."""
    sections = _sections()
    reads: set[str] = set()
    original = params_module._Strict.__getattribute__

    def getattribute(self: object, name: str) -> object:
        value = original(self, name)
        kind = type(self)
        # leaves only (params.train is the way to a setting, not one); paths are deps and outs
        if name in kind.model_fields and kind in sections and not isinstance(value, params_module._Strict):
            section = sections[kind]
            if kind is Params:
                if name != "paths":
                    reads.add(name)
            elif section == "paths":
                pass
            elif kind in _model_types(Params.model_fields[section].annotation):
                reads.add(f"{section}.{name}")
            else:
                reads.add(section)
        return value

    params_module._Strict.__getattribute__ = getattribute  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        params_module._Strict.__getattribute__ = original  # type: ignore[method-assign]


def _covered(read: str, listed: set[str]) -> bool:
    parts = read.split(".")
    return any(".".join(parts[:i]) in listed for i in range(1, len(parts) + 1))


IN_PROCESS = [s for s in cli.STAGES if s != "notebooks"]  # notebooks run in their own kernels


@contextlib.contextmanager
def recording_files() -> Iterator[set[tuple[str, Path]]]:
    """Record every file read or written through pipeline.io and pipeline.spreadsheet (the
    stages' only ways to their artifacts, DuckDB's scans of whole folders aside) as
    ('read' | 'write', absolute path)."""
    from pipeline import io as io_module
    from pipeline import spreadsheet

    seen: set[tuple[str, Path]] = set()
    originals = [(module, name, getattr(module, name)) for module in (io_module, spreadsheet)
                 for name in dir(module) if name.startswith(("read_", "write_"))]

    def recorded(function: Callable, mode: str) -> Callable:
        def call(path: object, *args: object, **kwargs: object) -> object:
            seen.add((mode, Path(path).resolve()))
            return function(path, *args, **kwargs)
        return call

    for module, name, function in originals:
        setattr(module, name, recorded(function, name.split("_")[0]))
    try:
        yield seen
    finally:
        for module, name, function in originals:
            setattr(module, name, function)


@pytest.fixture(scope="module")
def recorded_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every in-process stage run once on a small sample, recording the settings it reads and
    the files it opens."""
    params = params_in(tmp_path_factory.mktemp("reads"), generate={"n_leads": 3000},
                       train={"min_customers": 30}, weights={"bootstrap_samples": 3})
    settings, files = {}, {}
    for stage in IN_PROCESS:
        stage_params = cli.for_stage(stage, params)
        with recording_reads() as reads, recording_files() as opened:
            cli.STAGES[stage][0](stage_params)
        settings[stage], files[stage] = reads, opened
    return {"params": params, "settings": settings, "files": files}


@pytest.fixture(scope="module")
def reads_per_stage(recorded_runs: dict[str, object]) -> dict[str, set[str]]:
    return recorded_runs["settings"]


def _published_as(path: Path) -> Path:
    """A file written into a folder's staging copy (`.<folder>.leadcal-staging-<pid>/`, swapped
    in whole when the stage ends, pipeline.staging) as the path it ends up at."""
    parts = [re.sub(r"^\.(.+)\.leadcal-staging-\d+$", r"\1", part) for part in path.parts]
    return Path(*parts)


@pytest.mark.parametrize("stage", IN_PROCESS)
def test_every_file_a_stage_opens_is_one_it_declares(stage: str, recorded_runs: dict[str, object]) -> None:
    """The registry's reads and writes hold the files the stage really opens: one it reads must
    lie in a declared read (or in what it writes itself: the publish stage reads its previous
    publication), one it writes in a declared write."""
    paths, declared = recorded_runs["params"].paths, registry.BY_NAME[stage]
    reads = [Path(registry.resolved(r, paths)).resolve() for r in declared.reads]
    writes = [Path(registry.resolved(w, paths)).resolve() for w in declared.writes]
    opened = {(mode, _published_as(path)) for mode, path in recorded_runs["files"][stage]}
    undeclared = sorted(f"{mode} {path}" for mode, path in opened
                        if not any(path == root or root in path.parents
                                   for root in (writes if mode == "write" else reads + writes)))
    assert recorded_runs["files"][stage], f"nothing recorded for {stage!r}: the recorder missed its I/O"
    assert not undeclared, f"stage {stage!r} opens files pipeline/stages/registry.py does not declare: {undeclared}"


def test_recording_sees_keys_sections_and_top_level_values() -> None:
    params = Params()
    with recording_reads() as reads:
        _ = params.train.max_fit_leads, params.seed, params.source.wide.activities, params.paths.models
    assert reads == {"train.max_fit_leads", "seed", "source"}
    assert _covered("train.max_fit_leads", {"train"}) and not _covered("train.max_fit_leads", {"train.folds"})


@pytest.mark.parametrize("stage", IN_PROCESS)
def test_every_setting_a_stage_reads_is_one_it_declares(stage: str, reads_per_stage: dict[str, set[str]]) -> None:
    listed = set(registry.BY_NAME[stage].params)
    missing = sorted(r for r in reads_per_stage[stage] if not _covered(r, listed))
    assert not missing, f"stage {stage!r} reads {missing} but pipeline/stages/registry.py does not declare them"


# --------------------------------------------------------------------------- dvc.yaml against the declarations


def _entries(items: list | None) -> list[str]:
    return [next(iter(item)) if isinstance(item, dict) else item for item in items or []]


def test_dvc_yaml_has_the_declared_stages_in_order() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [stage.dvc_name for stage in registry.STAGES]
    assert [spec["cmd"] for spec in stages.values()] == [f"leadcal {stage.name}" for stage in registry.STAGES]


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_dvc_yaml_lists_the_declared_params_reads_and_writes(stage: str) -> None:
    """dvc.yaml's params, data deps and outs (with metrics) are exactly the declared ones: DVC
    re-runs a stage on what its entry lists, so one missing is a stale output and one too many
    a needless re-run."""
    declared, spec = registry.BY_NAME[stage], _dvc_stages()[stage]
    assert sorted(spec.get("params", [])) == sorted(declared.params), "params"
    assert sorted(d for d in _entries(spec.get("deps")) if not d.startswith("pipeline/")) == sorted(declared.reads), "deps"
    assert sorted(_entries(spec.get("outs")) + _entries(spec.get("metrics"))) == sorted(declared.writes), "outs"
    persisted = sorted(next(iter(item)) for item in spec.get("outs", []) if isinstance(item, dict)
                       and next(iter(item.values())).get("persist"))
    assert persisted == sorted(declared.persist), "persist"
